"""What every gallery store is: `GalleryStore`, its items, and the rules for tags and ids.

Tags are normalised here (not only in the web API) so that every way in gives the same rules.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ganime.errors import GanimeError
from ganime.io import utc_now

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")
MAX_TAGS = 8
MAX_TAG_LEN = 32
MAX_LIST = 500
_TAG_RE = re.compile(r"^\w[\w-]*$")  # letters (any script), digits, '_' and '-' after the first
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
# a face's edits and latent go into permalinks as they are: only the characters the page's forms use
MAX_EDITS_LEN = 2048
MAX_Z_LEN = 8192
_EDITS_RE = re.compile(r"[a-z0-9_:.,-]*")  # name:amount,... (ganime.latent.format_edits)
_Z_RE = re.compile(r"[A-Za-z0-9_-]*")  # base64url float32, no padding


class GalleryError(GanimeError):
    """Bad gallery input (tags, ids) or an unusable store."""


class GalleryFullError(GalleryError):
    """The gallery holds its quota of items already (checked inside the store's own write)."""

    def __init__(self, max_items: int) -> None:
        super().__init__(f"the gallery is full ({max_items} faces); delete some first")


class StoreBusyError(GalleryError):
    """The store is locked by another writer or unreachable for now: the same call may work a moment later."""


@dataclass(frozen=True)
class GalleryItem:
    """One saved face; its PNG is fetched separately (`GalleryStore.image`).

    `edits` ("name:amount,..." as a permalink's e=) and `z` (a face found by picture: its latent as base64url
    float32, `seed` then being where the search started) are "" for a plain seed's face."""

    id: str
    created: str  # ISO 8601, UTC
    model_id: str
    seed: int
    truncation: float
    tags: list[str] = field(default_factory=list)
    edits: str = ""
    z: str = ""

    @classmethod
    def new(
        cls, model_id: str, seed: int, truncation: float, tags: list[str] | None, edits: str = "", z: str = ""
    ) -> GalleryItem:
        """An item about to be saved: a fresh id, created now, its tags normalised, its edits and latent
        checked (GalleryError if bad)."""
        edits, z = check_face(edits, z)
        return cls(new_id(), utc_now("microseconds"), model_id, int(seed), float(truncation), normalize_tags(tags), edits, z)

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


def check_face(edits: str | None, z: str | None) -> tuple[str, str]:
    """A face's edits and latent as stored ("" for none): the permalink's characters only, within bounds.
    Whether they fit a generator (known directions, z_dim values) is the web API's check (web/images.py)."""
    edits, z = edits or "", z or ""
    if not isinstance(edits, str) or len(edits) > MAX_EDITS_LEN or not _EDITS_RE.fullmatch(edits):
        raise GalleryError(
            f"invalid edits {str(edits)[:40]!r}: expected name:amount,... (at most {MAX_EDITS_LEN} characters)"
        )
    if not isinstance(z, str) or len(z) > MAX_Z_LEN or not _Z_RE.fullmatch(z):
        raise GalleryError(f"invalid z {str(z)[:40]!r}: expected base64url text (at most {MAX_Z_LEN} characters)")
    return edits, z


def busy_when_locked(method: Callable[..., T]) -> Callable[..., T]:
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


class GalleryStore(ABC):
    """Where saved faces live. Implementations are safe to call from several threads."""

    #: shown by the CLI and /api/info
    location: str

    def add(
        self,
        *,
        model_id: str,
        seed: int,
        truncation: float,
        png: bytes,
        tags: list[str] | None = None,
        max_items: int = 0,
        edits: str = "",
        z: str = "",
    ) -> GalleryItem:
        """Save one face (with its edits and latent, "" for none); returns it with its new id. With
        `max_items`, GalleryFullError when the gallery holds that many already: counted and written
        atomically, so concurrent saves from any number of threads or processes cannot pass the quota."""
        item = GalleryItem.new(model_id, seed, truncation, tags, edits, z)
        self._insert(item, png, max_items)
        return item

    @abstractmethod
    def _insert(self, item: GalleryItem, png: bytes, max_items: int) -> None:
        """Write a new item and its PNG, or raise GalleryFullError when `max_items` (> 0) are held already;
        the count and the write are one atomic step."""

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


def check_list_args(tag: str | None, limit: int, offset: int) -> str | None:
    """Checks `list`/`count` arguments (GalleryError); returns the normalised tag."""
    if not 1 <= limit <= MAX_LIST:
        raise GalleryError(f"limit must be in 1..{MAX_LIST}")
    if offset < 0:
        raise GalleryError("offset must not be negative")
    return normalize_tag(tag) if tag is not None else None


def redact(uri: str) -> str:
    """A connection string without its password, for messages."""
    return re.sub(r"//[^@/]*@", "//***@", uri)
