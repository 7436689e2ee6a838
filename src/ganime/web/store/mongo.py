"""The MongoDB gallery store (the `mongodb` extra): one document per item.

The quota is a counter document (`<collection>_meta`, `{_id: "items", n}`) moved by conditional writes: a
save first increments it only where `n < max_items` (one atomic `find_one_and_update`), so concurrent
saves from any number of processes cannot pass the quota; a delete decrements it. The counter starts from
the collection's count the first time a store opens it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ganime.errors import MissingDependencyError
from ganime.web.store.base import (
    GalleryError,
    GalleryFullError,
    GalleryItem,
    GalleryStore,
    busy_when_locked,
    check_id,
    check_list_args,
    redact,
)


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
        self._meta = db[f"{collection}_meta"]
        self.location = f"mongodb {db.name}.{collection}"
        try:
            self._col.create_index("tags")
            self._col.create_index([("created", -1)])
            if self._meta.find_one({"_id": "items"}) is None:
                try:
                    self._meta.insert_one({"_id": "items", "n": self._col.count_documents({})})
                except Exception as e:  # another process made it first: keep theirs
                    if not _is(e, "DuplicateKeyError"):
                        raise
        except Exception as e:  # noqa: BLE001 - pymongo raises many connection error types
            client.close()  # its monitor threads would otherwise outlive the error
            first = str(e).split(", Timeout:")[0][:200]  # pymongo appends a long topology description
            raise GalleryError(f"cannot reach MongoDB at {redact(uri)}: {first}") from None

    @staticmethod
    def _item(doc: dict) -> GalleryItem:
        return GalleryItem(
            doc["_id"],
            doc["created"],
            doc["model_id"],
            int(doc["seed"]),
            float(doc["truncation"]),
            list(doc.get("tags", [])),
            doc.get("edits") or "",  # documents saved before these fields have neither
            doc.get("z") or "",
        )

    @busy_when_locked
    def _insert(self, item: GalleryItem, png: bytes, max_items: int) -> None:
        from bson import Binary, Int64

        doc = {**item.to_dict(), "seed": Int64(item.seed), "png": Binary(png)}
        doc["_id"] = doc.pop("id")
        # reserve a place first: a conditional increment, atomic on the server (no count-then-insert race)
        where: dict[str, Any] = {"_id": "items"}
        if max_items:
            where["n"] = {"$lt": max_items}
        if self._meta.find_one_and_update(where, {"$inc": {"n": 1}}) is None:
            raise GalleryFullError(max_items)
        try:
            self._col.insert_one(doc)
        except BaseException:
            self._meta.update_one({"_id": "items"}, {"$inc": {"n": -1}})  # give the place back
            raise

    _FIELDS: ClassVar[dict[str, int]] = {"png": 0}  # list and get without the image bytes

    @busy_when_locked
    def get(self, item_id: str) -> GalleryItem | None:
        doc = self._col.find_one({"_id": check_id(item_id)}, self._FIELDS)
        return self._item(doc) if doc else None

    @busy_when_locked
    def image(self, item_id: str) -> bytes | None:
        doc = self._col.find_one({"_id": check_id(item_id)}, {"png": 1})
        return bytes(doc["png"]) if doc else None

    @busy_when_locked
    def list(self, tag: str | None = None, limit: int = 100, offset: int = 0) -> list[GalleryItem]:
        tag = check_list_args(tag, limit, offset)
        query = {} if tag is None else {"tags": tag}  # matches array elements, served by the multikey index
        cur = self._col.find(query, self._FIELDS).sort([("created", -1), ("_id", 1)]).skip(offset).limit(limit)
        return [self._item(d) for d in cur]

    @busy_when_locked
    def count(self, tag: str | None = None) -> int:
        tag = check_list_args(tag, 1, 0)
        return self._col.count_documents({} if tag is None else {"tags": tag})

    @busy_when_locked
    def tags(self) -> dict[str, int]:
        rows = self._col.aggregate(
            [{"$unwind": "$tags"}, {"$group": {"_id": "$tags", "n": {"$sum": 1}}}, {"$sort": {"n": -1, "_id": 1}}]
        )
        return {r["_id"]: r["n"] for r in rows}

    @busy_when_locked
    def delete(self, item_id: str) -> bool:
        gone = self._col.delete_one({"_id": check_id(item_id)}).deleted_count > 0
        if gone:
            self._meta.update_one({"_id": "items"}, {"$inc": {"n": -1}})
        return gone

    def close(self) -> None:
        self._client.close()


def _is(error: BaseException, name: str) -> bool:
    """pymongo's (or mongomock's) error class by name, without importing pymongo."""
    return any(c.__name__ == name for c in type(error).__mro__)
