"""Gallery stores: saved faces (seed, truncation, PNG) with tags, in SQLite (default) or MongoDB.

Both backends implement `GalleryStore`; `open_store` picks one from a path or a `mongodb://` URI.
Tags are normalised here (not only in the web API) so that every way in gives the same rules.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ganime.errors import ConfigError, GanimeError, MissingDependencyError

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")
MAX_TAGS = 8
MAX_TAG_LEN = 32
MAX_LIST = 500
STORE_FILE = "gallery.sqlite"
_TAG_RE = re.compile(r"^\w[\w-]*$")  # letters (any script), digits, '_' and '-' after the first
_ID_RE = re.compile(r"^[0-9a-f]{16}$")


class GalleryError(GanimeError):
    """Bad gallery input (tags, ids) or an unusable store."""


class StoreBusyError(GalleryError):
    """The store is locked by another writer or unreachable for now: the same call may work a moment later."""


@dataclass(frozen=True)
class GalleryItem:
    """One saved face; its PNG is fetched separately (`GalleryStore.image`)."""

    id: str
    created: str  # ISO 8601, UTC
    model_id: str
    seed: int
    truncation: float
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_tags(tags: list[str] | tuple[str, ...] | None) -> list[str]:
    """Lower-cased, stripped, de-duplicated tags in their given order; GalleryError says what is allowed."""
    out: list[str] = []
    for raw in tags or []:
        if not isinstance(raw, str):
            raise GalleryError(f"tags must be strings, got {type(raw).__name__}")
        tag = normalize_tag(raw)
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise GalleryError(f"at most {MAX_TAGS} tags per item (got {len(out)})")
    return out


def normalize_tag(raw: str) -> str:
    """One tag: 1-32 letters, digits, '_' or '-' (not first), any script; NFKC-folded and lower-cased
    (so full-width 'ａｂｃ' and 'ABC' are the tag 'abc')."""
    tag = unicodedata.normalize("NFKC", raw).strip().lower()
    if not 1 <= len(tag) <= MAX_TAG_LEN or not _TAG_RE.match(tag):
        raise GalleryError(
            f"invalid tag {raw[:40]!r}: use 1-{MAX_TAG_LEN} letters, digits, '_' or '-' (not first), no spaces"
        )
    return tag


def _busy_when_locked(method: Callable[..., T]) -> Callable[..., T]:
    """A locked SQLite file or an unreachable MongoDB raise StoreBusyError (the web answers 503, retry)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise StoreBusyError(f"{self.location} is locked by another writer") from None
            raise
        except Exception as e:
            # pymongo's ConnectionFailure family (AutoReconnect, timeouts), matched without importing pymongo
            if any(c.__name__ == "ConnectionFailure" for c in type(e).__mro__):
                raise StoreBusyError(f"{self.location} does not answer") from None
            raise

    return wrapper


def check_id(item_id: str) -> str:
    """Gallery ids are 16 lower-case hex digits."""
    if not isinstance(item_id, str) or not _ID_RE.match(item_id):
        raise GalleryError(f"invalid gallery id {str(item_id)[:40]!r}: expected 16 hex digits")
    return item_id


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class GalleryStore(ABC):
    """Where saved faces live. Implementations are safe to call from several threads."""

    #: shown by the CLI and /api/info
    location: str

    @abstractmethod
    def add(
        self, *, model_id: str, seed: int, truncation: float, png: bytes, tags: list[str] | None = None
    ) -> GalleryItem:
        """Save one face; returns it with its new id."""

    @abstractmethod
    def get(self, item_id: str) -> GalleryItem | None:
        """The item, or None."""

    @abstractmethod
    def image(self, item_id: str) -> bytes | None:
        """The item's PNG bytes, or None."""

    @abstractmethod
    def list(self, tag: str | None = None, limit: int = 100, offset: int = 0) -> list[GalleryItem]:
        """Items, newest first, optionally only those carrying `tag`."""

    @abstractmethod
    def count(self, tag: str | None = None) -> int:
        """How many items (with `tag`)."""

    @abstractmethod
    def tags(self) -> dict[str, int]:
        """Every tag in use with its item count, most used first."""

    @abstractmethod
    def delete(self, item_id: str) -> bool:
        """Remove the item; False if there was none."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_list_args(tag: str | None, limit: int, offset: int) -> str | None:
    if not 1 <= limit <= MAX_LIST:
        raise GalleryError(f"limit must be in 1..{MAX_LIST}")
    if offset < 0:
        raise GalleryError("offset must not be negative")
    return normalize_tag(tag) if tag is not None else None


# --- SQLite ----------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    model_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    truncation REAL NOT NULL,
    png BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_created ON items (created);
CREATE TABLE IF NOT EXISTS tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS item_tags (
    item_id TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (item_id, tag_id)
);
CREATE INDEX IF NOT EXISTS item_tags_tag ON item_tags (tag_id);
"""


class SQLiteStore(GalleryStore):
    """Items and tags (many-to-many) in one SQLite file in WAL mode (readers do not block the writer)."""

    def __init__(self, path: str | Path, timeout: float = 3.0) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout  # how long a call waits for another process's write lock, then StoreBusyError
        self.location = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as con, con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"cannot open gallery {self.path}: {e}") from None
        except OSError as e:
            raise GalleryError(f"cannot create gallery {self.path}: {e}") from None
        # one writer at a time inside this process; SQLite's busy timeout covers other processes
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # A short-lived connection per call: sqlite3 connections must not cross threads, and the web app
        # calls from a thread pool. Opening one costs tens of microseconds.
        con = sqlite3.connect(self.path, timeout=self.timeout)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def journal_mode(self) -> str:
        with closing(self._connect()) as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    @_busy_when_locked
    def add(
        self, *, model_id: str, seed: int, truncation: float, png: bytes, tags: list[str] | None = None
    ) -> GalleryItem:
        tags = normalize_tags(tags)
        item = GalleryItem(new_id(), utc_now(), model_id, int(seed), float(truncation), tags)
        with self._write_lock, closing(self._connect()) as con, con:
            con.execute(
                "INSERT INTO items (id, created, model_id, seed, truncation, png) VALUES (?, ?, ?, ?, ?, ?)",
                (item.id, item.created, item.model_id, item.seed, item.truncation, sqlite3.Binary(png)),
            )
            for pos, tag in enumerate(tags):
                con.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag,))
                con.execute(
                    "INSERT INTO item_tags (item_id, tag_id, position) SELECT ?, id, ? FROM tags WHERE name = ?",
                    (item.id, pos, tag),
                )
        return item

    def _items(self, con: sqlite3.Connection, rows: list[tuple]) -> list[GalleryItem]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, list[str]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for item_id, name in con.execute(
            f"SELECT it.item_id, t.name FROM item_tags it JOIN tags t ON t.id = it.tag_id "
            f"WHERE it.item_id IN ({marks}) ORDER BY it.item_id, it.position",
            ids,
        ):
            tags[item_id].append(name)
        return [GalleryItem(r[0], r[1], r[2], r[3], r[4], tags[r[0]]) for r in rows]

    @_busy_when_locked
    def get(self, item_id: str) -> GalleryItem | None:
        check_id(item_id)
        with closing(self._connect()) as con:
            rows = con.execute(
                "SELECT id, created, model_id, seed, truncation FROM items WHERE id = ?", (item_id,)
            ).fetchall()
            found = self._items(con, rows)
        return found[0] if found else None

    @_busy_when_locked
    def image(self, item_id: str) -> bytes | None:
        check_id(item_id)
        with closing(self._connect()) as con:
            row = con.execute("SELECT png FROM items WHERE id = ?", (item_id,)).fetchone()
        return bytes(row[0]) if row else None

    @_busy_when_locked
    def list(self, tag: str | None = None, limit: int = 100, offset: int = 0) -> list[GalleryItem]:
        tag = _check_list_args(tag, limit, offset)
        cols = "i.id, i.created, i.model_id, i.seed, i.truncation"
        with closing(self._connect()) as con:
            if tag is None:
                sql, args = f"SELECT {cols} FROM items i", ()
            else:
                sql = (
                    f"SELECT {cols} FROM items i JOIN item_tags it ON it.item_id = i.id "
                    "JOIN tags t ON t.id = it.tag_id WHERE t.name = ?"
                )
                args = (tag,)
            # rowid (insertion order) breaks ties between items saved in the same microsecond
            rows = con.execute(f"{sql} ORDER BY i.created DESC, i.rowid DESC LIMIT ? OFFSET ?", (*args, limit, offset))
            return self._items(con, rows.fetchall())

    @_busy_when_locked
    def count(self, tag: str | None = None) -> int:
        tag = _check_list_args(tag, 1, 0)
        with closing(self._connect()) as con:
            if tag is None:
                return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            return con.execute(
                "SELECT COUNT(*) FROM item_tags it JOIN tags t ON t.id = it.tag_id WHERE t.name = ?", (tag,)
            ).fetchone()[0]

    @_busy_when_locked
    def tags(self) -> dict[str, int]:
        with closing(self._connect()) as con:
            rows = con.execute(
                "SELECT t.name, COUNT(*) AS n FROM tags t JOIN item_tags it ON it.tag_id = t.id "
                "GROUP BY t.id ORDER BY n DESC, t.name"
            ).fetchall()
        return dict(rows)

    @_busy_when_locked
    def delete(self, item_id: str) -> bool:
        check_id(item_id)
        with self._write_lock, closing(self._connect()) as con, con:
            gone = con.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount > 0
            # tags no item carries any more would linger in tag lists otherwise
            con.execute("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM item_tags)")
        return gone


# --- MongoDB ---------------------------------------------------------------------------------------------


class MongoStore(GalleryStore):
    """One document per item in a collection; tags as an indexed array field (multikey index)."""

    def __init__(self, uri: str, collection: str = "gallery", client: Any = None) -> None:
        if client is None:
            try:
                import pymongo
            except ImportError:
                raise MissingDependencyError(
                    "the MongoDB gallery needs pymongo: pip install 'ganime[mongodb]'"
                ) from None
            # fail fast when no server answers, unless the URI sets its own timeout
            options = {} if "serverselectiontimeoutms" in uri.lower() else {"serverSelectionTimeoutMS": 5000}
            try:
                client = pymongo.MongoClient(uri, **options)
            except (pymongo.errors.ConfigurationError, pymongo.errors.InvalidURI, ValueError) as e:
                raise GalleryError(f"bad MongoDB URI: {e}") from None
        self._client = client
        db = client.get_default_database(default="ganime")  # mongodb://host/DB names it
        self._col = db[collection]
        self.location = f"mongodb {db.name}.{collection}"
        try:
            self._col.create_index("tags")
            self._col.create_index([("created", -1)])
        except Exception as e:  # noqa: BLE001 - pymongo raises many connection error types
            first = str(e).split(", Timeout:")[0][:200]  # pymongo appends a long topology description
            raise GalleryError(f"cannot reach MongoDB at {_redact(uri)}: {first}") from None

    @staticmethod
    def _item(doc: dict) -> GalleryItem:
        return GalleryItem(
            doc["_id"],
            doc["created"],
            doc["model_id"],
            int(doc["seed"]),
            float(doc["truncation"]),
            list(doc.get("tags", [])),
        )

    @_busy_when_locked
    def add(
        self, *, model_id: str, seed: int, truncation: float, png: bytes, tags: list[str] | None = None
    ) -> GalleryItem:
        tags = normalize_tags(tags)
        item = GalleryItem(new_id(), utc_now(), model_id, int(seed), float(truncation), tags)
        from bson import Binary, Int64

        doc = {**item.to_dict(), "seed": Int64(item.seed), "png": Binary(png)}
        doc["_id"] = doc.pop("id")
        self._col.insert_one(doc)
        return item

    _FIELDS: ClassVar[dict[str, int]] = {"png": 0}  # list and get without the image bytes

    @_busy_when_locked
    def get(self, item_id: str) -> GalleryItem | None:
        doc = self._col.find_one({"_id": check_id(item_id)}, self._FIELDS)
        return self._item(doc) if doc else None

    @_busy_when_locked
    def image(self, item_id: str) -> bytes | None:
        doc = self._col.find_one({"_id": check_id(item_id)}, {"png": 1})
        return bytes(doc["png"]) if doc else None

    @_busy_when_locked
    def list(self, tag: str | None = None, limit: int = 100, offset: int = 0) -> list[GalleryItem]:
        tag = _check_list_args(tag, limit, offset)
        query = {} if tag is None else {"tags": tag}  # matches array elements, served by the multikey index
        cur = self._col.find(query, self._FIELDS).sort([("created", -1), ("_id", 1)]).skip(offset).limit(limit)
        return [self._item(d) for d in cur]

    @_busy_when_locked
    def count(self, tag: str | None = None) -> int:
        tag = _check_list_args(tag, 1, 0)
        return self._col.count_documents({} if tag is None else {"tags": tag})

    @_busy_when_locked
    def tags(self) -> dict[str, int]:
        rows = self._col.aggregate(
            [{"$unwind": "$tags"}, {"$group": {"_id": "$tags", "n": {"$sum": 1}}}, {"$sort": {"n": -1, "_id": 1}}]
        )
        return {r["_id"]: r["n"] for r in rows}

    @_busy_when_locked
    def delete(self, item_id: str) -> bool:
        return self._col.delete_one({"_id": check_id(item_id)}).deleted_count > 0

    def close(self) -> None:
        self._client.close()


def _redact(uri: str) -> str:
    # never echo a password from a connection string
    return re.sub(r"//[^@/]*@", "//***@", uri)


# --- choosing a store ------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """$GANIME_DATA_DIR, else $XDG_DATA_HOME/ganime, else ~/.local/share/ganime."""
    if os.environ.get("GANIME_DATA_DIR"):
        return Path(os.environ["GANIME_DATA_DIR"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ganime"


def open_store(spec: str | Path | None = None, *, create: bool = True) -> GalleryStore:
    """A `mongodb://` or `mongodb+srv://` URI, a .sqlite file, a directory (-> DIR/gallery.sqlite) or None
    (-> the user data dir's gallery.sqlite). create=False refuses a SQLite file that does not exist yet
    (reading commands: a mistyped path must not leave an empty gallery behind)."""
    text = "" if spec is None else str(spec)
    if text.startswith(("mongodb://", "mongodb+srv://")):
        return MongoStore(text)
    if "://" in text:
        raise ConfigError(f"unknown store {_redact(text)!r}: give a .sqlite path, a directory or a mongodb:// URI")
    path = default_data_dir() / STORE_FILE if not text else Path(text).expanduser()
    if path.is_dir():
        path = path / STORE_FILE
    if not create and not path.is_file():
        raise GalleryError(f"no gallery at {path}: save a face from `ganime serve` first, or pass --store")
    return SQLiteStore(path)
