"""Gallery stores: saved faces (seed, truncation, PNG) with tags, in SQLite (default) or MongoDB.

Both backends (store/sqlite.py, store/mongo.py) implement `GalleryStore` (store/base.py); `open_store` picks
one from a path or a `mongodb://` URI.
"""

from __future__ import annotations

import os
from pathlib import Path

from ganime.errors import ConfigError
from ganime.web.store.base import (
    MAX_LIST,
    MAX_TAG_LEN,
    MAX_TAGS,
    GalleryError,
    GalleryFullError,
    GalleryItem,
    GalleryStore,
    StoreBusyError,
    check_id,
    normalize_tag,
    normalize_tags,
    redact,
)
from ganime.web.store.mongo import MongoStore
from ganime.web.store.sqlite import SQLiteStore

__all__ = [
    "MAX_LIST", "MAX_TAGS", "MAX_TAG_LEN", "STORE_FILE", "GalleryError", "GalleryFullError", "GalleryItem", "GalleryStore", "MongoStore",
    "SQLiteStore", "StoreBusyError", "check_id", "default_data_dir", "normalize_tag", "normalize_tags", "open_store",
]
STORE_FILE = "gallery.sqlite"


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
        raise ConfigError(f"unknown store {redact(text)!r}: give a .sqlite path, a directory or a mongodb:// URI")
    path = default_data_dir() / STORE_FILE if not text else Path(text).expanduser()
    if path.is_dir():
        path = path / STORE_FILE
    if not create and not path.is_file():
        raise GalleryError(f"no gallery at {path}: save a face from `ganime serve` first, or pass --store")
    return SQLiteStore(path)
