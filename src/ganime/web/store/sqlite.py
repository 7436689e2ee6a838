"""The default gallery store: items and tags in one SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from ganime.web.store.base import (
    GalleryError,
    GalleryFullError,
    GalleryItem,
    GalleryStore,
    busy_when_locked,
    check_id,
    check_list_args,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    model_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    truncation REAL NOT NULL,
    png BLOB NOT NULL,
    edits TEXT NOT NULL DEFAULT '',
    z TEXT NOT NULL DEFAULT ''
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
# columns added after the first release: a gallery file made before them gets them when a store opens it
_ADDED_COLUMNS = {"edits": "TEXT NOT NULL DEFAULT ''", "z": "TEXT NOT NULL DEFAULT ''"}
_COLS = "i.id, i.created, i.model_id, i.seed, i.truncation, i.edits, i.z"


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
            self._migrate()  # after the schema: its own connection and transaction
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"cannot open gallery {self.path}: {e}") from None
        except OSError as e:
            raise GalleryError(f"cannot create gallery {self.path}: {e}") from None
        # one writer at a time inside this process; SQLite's busy timeout covers other processes
        self._write_lock = threading.Lock()

    def _missing_columns(self, con: sqlite3.Connection) -> list[str]:
        have = {row[1] for row in con.execute("PRAGMA table_info(items)")}
        return [c for c in _ADDED_COLUMNS if c not in have]

    def _migrate(self) -> None:
        """Adds the columns an older gallery file lacks (its items keep "" there). A file that has them is
        only read; otherwise one write transaction, so two processes opening one old file add them once."""
        with closing(self._connect()) as con:
            if not self._missing_columns(con):
                return
            con.isolation_level = None
            con.execute("BEGIN IMMEDIATE")
            try:
                for column in self._missing_columns(con):  # again under the lock: another opener may have won
                    con.execute(f"ALTER TABLE items ADD COLUMN {column} {_ADDED_COLUMNS[column]}")
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def _connect(self) -> sqlite3.Connection:
        # A short-lived connection per call: sqlite3 connections must not cross threads, and the web app
        # calls from a thread pool. Opening one costs tens of microseconds.
        con = sqlite3.connect(self.path, timeout=self.timeout)
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def journal_mode(self) -> str:
        with closing(self._connect()) as con:
            return con.execute("PRAGMA journal_mode").fetchone()[0]

    @busy_when_locked
    def _insert(self, item: GalleryItem, png: bytes, max_items: int) -> None:
        with self._write_lock, closing(self._connect()) as con:
            con.isolation_level = None  # our own transaction: BEGIN IMMEDIATE takes the write lock first
            con.execute("BEGIN IMMEDIATE")  # so the count below cannot change before the insert (any process)
            try:
                if max_items and con.execute("SELECT COUNT(*) FROM items").fetchone()[0] >= max_items:
                    raise GalleryFullError(max_items)
                con.execute(
                    "INSERT INTO items (id, created, model_id, seed, truncation, png, edits, z) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.id, item.created, item.model_id, item.seed, item.truncation, sqlite3.Binary(png),
                     item.edits, item.z),
                )
                for pos, tag in enumerate(item.tags):
                    con.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag,))
                    con.execute(
                        "INSERT INTO item_tags (item_id, tag_id, position) SELECT ?, id, ? FROM tags WHERE name = ?",
                        (item.id, pos, tag),
                    )
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

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
        return [GalleryItem(r[0], r[1], r[2], r[3], r[4], tags[r[0]], r[5], r[6]) for r in rows]

    @busy_when_locked
    def get(self, item_id: str) -> GalleryItem | None:
        check_id(item_id)
        with closing(self._connect()) as con:
            rows = con.execute(f"SELECT {_COLS} FROM items i WHERE i.id = ?", (item_id,)).fetchall()
            found = self._items(con, rows)
        return found[0] if found else None

    @busy_when_locked
    def image(self, item_id: str) -> bytes | None:
        check_id(item_id)
        with closing(self._connect()) as con:
            row = con.execute("SELECT png FROM items WHERE id = ?", (item_id,)).fetchone()
        return bytes(row[0]) if row else None

    @busy_when_locked
    def list(self, tag: str | None = None, limit: int = 100, offset: int = 0) -> list[GalleryItem]:
        tag = check_list_args(tag, limit, offset)
        with closing(self._connect()) as con:
            if tag is None:
                sql, args = f"SELECT {_COLS} FROM items i", ()
            else:
                sql = (
                    f"SELECT {_COLS} FROM items i JOIN item_tags it ON it.item_id = i.id "
                    "JOIN tags t ON t.id = it.tag_id WHERE t.name = ?"
                )
                args = (tag,)
            # rowid (insertion order) breaks ties between items saved in the same microsecond
            rows = con.execute(f"{sql} ORDER BY i.created DESC, i.rowid DESC LIMIT ? OFFSET ?", (*args, limit, offset))
            return self._items(con, rows.fetchall())

    @busy_when_locked
    def count(self, tag: str | None = None) -> int:
        tag = check_list_args(tag, 1, 0)
        with closing(self._connect()) as con:
            if tag is None:
                return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            return con.execute(
                "SELECT COUNT(*) FROM item_tags it JOIN tags t ON t.id = it.tag_id WHERE t.name = ?", (tag,)
            ).fetchone()[0]

    @busy_when_locked
    def tags(self) -> dict[str, int]:
        with closing(self._connect()) as con:
            rows = con.execute(
                "SELECT t.name, COUNT(*) AS n FROM tags t JOIN item_tags it ON it.tag_id = t.id "
                "GROUP BY t.id ORDER BY n DESC, t.name"
            ).fetchall()
        return dict(rows)

    @busy_when_locked
    def delete(self, item_id: str) -> bool:
        check_id(item_id)
        with self._write_lock, closing(self._connect()) as con, con:
            gone = con.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount > 0
            # tags no item carries any more would linger in tag lists otherwise
            con.execute("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM item_tags)")
        return gone
