"""Gallery stores: the same behaviour from SQLite and MongoDB (a real server when GANIME_TEST_MONGODB_URI is set)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from ganime.errors import ConfigError
from ganime.web.store import (
    MAX_TAGS,
    STORE_FILE,
    GalleryError,
    GalleryFullError,
    MongoStore,
    SQLiteStore,
    normalize_tags,
    open_store,
)

MONGODB_URI = os.environ.get("GANIME_TEST_MONGODB_URI")
PNG = b"\x89PNG\r\n\x1a\nfake"


@pytest.fixture(params=["sqlite", "mongodb", "mongomock"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "g.sqlite")
        yield s
        s.close()
    elif request.param == "mongodb":
        if not MONGODB_URI:
            pytest.skip("set GANIME_TEST_MONGODB_URI=mongodb://HOST:PORT/DB to test against a MongoDB server")
        pytest.importorskip("pymongo", reason="the MongoDB store needs pymongo (the mongodb extra)")
        collection = f"gallery_test_{uuid.uuid4().hex[:8]}"
        s = MongoStore(MONGODB_URI, collection=collection)
        yield s
        s._col.drop()
        s._meta.drop()
        s.close()
    else:
        # mongomock is a fake in-process pymongo: it checks our query code, not a real server
        mongomock = pytest.importorskip("mongomock", reason="mongomock not installed")
        pytest.importorskip("bson", reason="bson (from pymongo) not installed")
        s = MongoStore("mongodb://fake/ganime", client=mongomock.MongoClient())
        yield s
        s.close()


def add(store, seed: int, tags: list[str], model: str = "m1"):
    return store.add(model_id=model, seed=seed, truncation=0.75, png=PNG + bytes([seed % 256]), tags=tags)


def test_add_get_image_round_trip(store):
    item = add(store, 2**53 - 1, ["Smile", " red-hair ", "smile", "笑顔"])
    assert item.tags == ["smile", "red-hair", "笑顔"]
    got = store.get(item.id)
    assert got == item and got.seed == 2**53 - 1 and got.truncation == 0.75
    assert store.image(item.id) == PNG + bytes([(2**53 - 1) % 256])
    assert store.get("0" * 16) is None and store.image("0" * 16) is None


def test_list_newest_first_tag_filter_many_to_many_and_counts(store):
    a = add(store, 1, ["cat", "smile"])
    b = add(store, 2, ["smile"])
    c = add(store, 3, [])
    assert [i.id for i in store.list()] == [c.id, b.id, a.id]
    assert [i.id for i in store.list("smile")] == [b.id, a.id]
    assert [i.id for i in store.list("CAT")] == [a.id]
    assert store.list("dog") == []
    assert store.count() == 3 and store.count("smile") == 2 and store.count("dog") == 0
    assert store.tags() == {"smile": 2, "cat": 1}
    assert [i.id for i in store.list(limit=2)] == [c.id, b.id]
    assert [i.id for i in store.list(limit=2, offset=2)] == [a.id]


def test_delete_removes_the_item_and_unused_tags(store):
    a = add(store, 1, ["cat", "smile"])
    b = add(store, 2, ["smile"])
    assert store.delete(a.id) is True
    assert store.delete(a.id) is False
    assert store.get(a.id) is None and store.image(a.id) is None
    assert [i.id for i in store.list("smile")] == [b.id] and store.list("cat") == []
    assert store.tags() == {"smile": 1}


@pytest.mark.parametrize(
    "tags",
    [["two words"], ["x" * 33], [""], ["-x"], ["a/b"], [f"t{i}" for i in range(MAX_TAGS + 1)], [1]],
)
def test_bad_tags_are_refused_with_what_is_allowed(store, tags):
    with pytest.raises(GalleryError, match="tag"):
        add(store, 1, tags)
    assert store.count() == 0


def test_bad_ids_and_list_arguments(store):
    for bad in ["x", "0" * 15, "G" * 16, "'; DROP TABLE items; --"]:
        with pytest.raises(GalleryError, match="16 hex"):
            store.get(bad)
    with pytest.raises(GalleryError):
        store.list(limit=0)
    with pytest.raises(GalleryError):
        store.list(tag="no spaces")


def test_edits_and_latent_are_kept_with_the_face(store):
    z = "AAAgPwAAwL8_-w"  # base64url, as the page writes a face found by picture
    edited = store.add(model_id="m1", seed=7, truncation=0.7, png=PNG, tags=["Red"], edits="hair-red:1.5,sefa-0:-2.0")
    found = store.add(model_id="m1", seed=3, truncation=1.0, png=PNG, z=z, edits="eyes-blue:1e-05")
    plain = add(store, 9, [])
    assert (edited.edits, edited.z, found.edits, found.z) == ("hair-red:1.5,sefa-0:-2.0", "", "eyes-blue:1e-05", z)
    assert plain.edits == "" and plain.z == "" and plain.to_dict()["edits"] == ""
    assert store.get(edited.id) == edited and store.get(found.id) == found and store.get(plain.id) == plain
    assert store.list() == [plain, found, edited] and store.list("red") == [edited]


@pytest.mark.parametrize(
    ("edits", "z"),
    [("hair-red:1&t=0.1", ""), ("hair-red:1#seed=1", ""), ("Hair:1", ""), ("a:1 ", ""), ("a:1," * 600, ""),
     ("", "AAAA+/=="), ("", "AAAA\n"), ("", "A" * 8193), (3, ""), ("", ["A"])],
)
def test_edits_and_latent_outside_the_permalink_form_are_refused(store, edits, z):
    # they go into permalinks as they are: nothing that could end or extend the fragment
    with pytest.raises(GalleryError, match="invalid (edits|z)"):
        store.add(model_id="m1", seed=1, truncation=1.0, png=PNG, edits=edits, z=z)
    assert store.count() == 0


def test_normalize_tags_keeps_order_and_drops_duplicates():
    assert normalize_tags(["B", "a", "b", "c_d", "e-f"]) == ["b", "a", "c_d", "e-f"]
    assert normalize_tags(None) == []


# --- SQLite specifics ------------------------------------------------------------------------------------


def test_sqlite_uses_wal_and_persists(tmp_path):
    path = tmp_path / "sub" / "g.sqlite"
    with SQLiteStore(path) as s:
        assert s.journal_mode() == "wal"
        item = add(s, 5, ["keep"])
    with SQLiteStore(path) as again:
        assert again.get(item.id) == item and again.list("keep") == [item]


# the items table as the first release made it, before a face's edits and latent were kept
OLD_SCHEMA = """
CREATE TABLE items (id TEXT PRIMARY KEY, created TEXT NOT NULL, model_id TEXT NOT NULL, seed INTEGER NOT NULL,
                    truncation REAL NOT NULL, png BLOB NOT NULL);
CREATE INDEX items_created ON items (created);
CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE item_tags (item_id TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
                        tag_id INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
                        position INTEGER NOT NULL, PRIMARY KEY (item_id, tag_id));
CREATE INDEX item_tags_tag ON item_tags (tag_id);
INSERT INTO items VALUES ('00000000000000aa', '2025-01-01T00:00:00.000000+00:00', 'old', 42, 0.8, x'89504e47');
INSERT INTO tags (name) VALUES ('kept');
INSERT INTO item_tags VALUES ('00000000000000aa', 1, 0);
"""


def old_gallery(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as con:
        con.executescript(OLD_SCHEMA)
        con.execute("PRAGMA journal_mode=WAL")
    return path


def columns(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as con:
        return [row[1] for row in con.execute("PRAGMA table_info(items)")]


def test_sqlite_gallery_made_before_edits_opens_and_takes_edited_faces(tmp_path):
    path = old_gallery(tmp_path / "old.sqlite")
    assert "edits" not in columns(path)
    with SQLiteStore(path) as s:
        [old] = s.list()
        assert (old.id, old.model_id, old.seed, old.truncation) == ("00000000000000aa", "old", 42, 0.8)
        assert old.tags == ["kept"]
        assert old.edits == "" and old.z == "" and s.get(old.id) == old and s.image(old.id) == b"\x89PNG"
        assert s.tags() == {"kept": 1}
        new = s.add(model_id="m", seed=7, truncation=0.7, png=PNG, tags=["kept"], edits="hair-red:1.5", max_items=2)
        found = s.add(model_id="m", seed=1, truncation=1.0, png=PNG, z="AAAgPw", max_items=3)
        with pytest.raises(GalleryFullError):  # the quota counts the old item as before
            s.add(model_id="m", seed=8, truncation=1.0, png=PNG, edits="hair-red:1.0", max_items=3)
    assert columns(path) == ["id", "created", "model_id", "seed", "truncation", "png", "edits", "z"]
    with SQLiteStore(path) as again:  # a second open finds nothing to add
        assert again.list() == [found, new, old] and again.get(new.id).edits == "hair-red:1.5"
        assert again.tags() == {"kept": 2} and again.count() == 3
    with closing(sqlite3.connect(path)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sqlite_old_gallery_opened_by_several_at_once_gets_its_columns_once(tmp_path):
    path = old_gallery(tmp_path / "old.sqlite")
    stores: list[SQLiteStore] = []
    assert not run_in_threads(lambda k: stores.append(SQLiteStore(path)), 6)
    assert columns(path).count("edits") == 1 and columns(path).count("z") == 1
    assert all(s.count() == 1 for s in stores)


def run_in_threads(work, n: int) -> list[BaseException]:
    """Run work(k) for k in range(n) in n threads; the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_sqlite_concurrent_writers_and_readers(tmp_path):
    s = SQLiteStore(tmp_path / "g.sqlite")

    def work(k: int) -> None:
        for i in range(10):
            add(s, k * 100 + i, [f"w{k}", "all"])
            s.list("all", limit=5)

    assert not run_in_threads(work, 6)
    assert s.count() == 60 and s.count("all") == 60 and s.count("w3") == 10


def test_sqlite_two_stores_on_one_file_wait_for_each_other(tmp_path):
    # two SQLiteStore objects are two connections with their own locks, like the server and a
    # `ganime gallery` command: SQLite's busy timeout makes writers queue instead of failing
    path = tmp_path / "g.sqlite"
    stores = [SQLiteStore(path), SQLiteStore(path)]
    added: list[str] = []

    def work(k: int) -> None:
        for i in range(15):
            item = add(stores[k % 2], k * 100 + i, ["shared"])
            added.append(item.id)
            if i % 3 == 0:
                assert stores[(k + 1) % 2].delete(item.id)
                added.remove(item.id)

    assert not run_in_threads(work, 4)
    assert {i.id for i in stores[0].list(limit=500)} == set(added) and stores[1].count("shared") == 40
    with SQLiteStore(path) as s, closing(sqlite3.connect(path)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s.tags() == {"shared": 40}


def test_sqlite_items_saved_in_the_same_instant_stay_newest_first(tmp_path, monkeypatch):
    import ganime.web.store.base as store_module

    monkeypatch.setattr(store_module, "utc_now", lambda timespec="seconds": "2026-01-01T00:00:00.000000+00:00")
    with SQLiteStore(tmp_path / "g.sqlite") as s:
        ids = [add(s, i, []).id for i in range(5)]
        assert [i.id for i in s.list()] == ids[::-1]


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "g.sqlite"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(GalleryError, match="cannot open gallery"):
        SQLiteStore(bad)


def test_open_store_picks_the_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("GANIME_DATA_DIR", str(tmp_path / "data"))
    with open_store(None) as s:
        assert Path(s.location) == tmp_path / "data" / STORE_FILE
    run = tmp_path / "run"
    run.mkdir()
    with open_store(run) as s:
        assert Path(s.location) == run / STORE_FILE
    with open_store(str(tmp_path / "x.db")) as s:
        assert isinstance(s, SQLiteStore) and Path(s.location) == tmp_path / "x.db"
    with pytest.raises(ConfigError, match="mongodb://"):
        open_store("postgres://user:secret@host/db")
    with pytest.raises(ConfigError) as e:
        open_store("redis://user:secret@host")
    assert "secret" not in str(e.value)
    # reading commands: a path with no gallery is an error, and stays absent
    with pytest.raises(GalleryError, match="no gallery at"):
        open_store(tmp_path / "typo.sqlite", create=False)
    assert not (tmp_path / "typo.sqlite").exists()
    with open_store(run, create=False) as s:  # the run dir's gallery made above
        assert s.count() == 0


def test_unreachable_mongodb_is_a_clear_error_without_the_password():
    pytest.importorskip("pymongo", reason="the MongoDB store needs pymongo (the mongodb extra)")
    # port 1 on loopback: refused at once; the URI's own timeout wins over the 5 s default
    with pytest.raises(GalleryError, match="cannot reach MongoDB") as e:
        open_store("mongodb://user:secret@127.0.0.1:1/ganime?serverSelectionTimeoutMS=300")
    assert "secret" not in str(e.value)


def test_a_mongodb_that_stops_answering_is_busy_not_a_crash():
    mongomock = pytest.importorskip("mongomock", reason="mongomock not installed")
    errors = pytest.importorskip("pymongo.errors")
    from ganime.web.store import StoreBusyError

    store = MongoStore("mongodb://fake/ganime", client=mongomock.MongoClient())

    class Gone:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                raise errors.AutoReconnect("connection reset by peer")

            return call

    store._col = Gone()  # the server went away after start-up
    for call in (lambda: store.add(model_id="m", seed=1, truncation=1.0, png=b"x"), store.count, store.tags):
        with pytest.raises(StoreBusyError, match="does not answer"):
            call()


def test_mongodb_documents_saved_before_edits_read_as_plain_faces():
    mongomock = pytest.importorskip("mongomock", reason="mongomock not installed")
    pytest.importorskip("bson", reason="bson (from pymongo) not installed")
    client = mongomock.MongoClient()
    client.ganime.gallery.insert_one(
        {"_id": "00000000000000aa", "created": "2025-01-01T00:00:00.000000+00:00", "model_id": "old", "seed": 42,
         "truncation": 0.8, "tags": ["kept"], "png": b"\x89PNG"}
    )
    with MongoStore("mongodb://fake/ganime", client=client) as s:
        [old] = s.list()
        assert (old.seed, old.tags, old.edits, old.z) == (42, ["kept"], "", "")
        new = s.add(model_id="m", seed=7, truncation=0.7, png=PNG, edits="hair-red:1.5", z="AAAgPw", max_items=2)
        with pytest.raises(GalleryFullError):  # the counter started from the old document
            s.add(model_id="m", seed=8, truncation=1.0, png=PNG, edits="hair-red:1.0", max_items=2)
        assert s.list() == [new, old]
        doc = client.ganime.gallery.find_one({"_id": new.id})
        assert doc["edits"] == "hair-red:1.5" and doc["z"] == "AAAgPw"


def test_sqlite_locked_by_another_process_is_busy(tmp_path):
    from ganime.web.store import StoreBusyError

    store = SQLiteStore(tmp_path / "g.sqlite", timeout=0.1)
    locker = sqlite3.connect(tmp_path / "g.sqlite")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreBusyError, match="locked"):
            store.add(model_id="m", seed=1, truncation=1.0, png=b"x")
        assert store.count() == 0  # WAL: readers go on while a writer holds the lock
    finally:
        locker.rollback()
        locker.close()


# --- the quota, enforced by the store's own write (issue #31) ----------------------------------------------


def test_quota_holds_against_concurrent_saves(store):
    for seed in range(3):
        add(store, seed, ["old"])
    full: list[int] = []

    def work(k: int) -> None:
        try:
            store.add(model_id="m", seed=100 + k, truncation=1.0, png=PNG, tags=["new"], max_items=5)
        except GalleryFullError:
            full.append(k)

    assert not run_in_threads(work, 8)
    assert store.count() == 5 and len(full) == 6
    with pytest.raises(GalleryFullError, match="full .5 faces"):
        store.add(model_id="m", seed=1, truncation=1.0, png=PNG, max_items=5)
    store.delete(store.list("new")[0].id)  # a delete frees a place
    store.add(model_id="m", seed=1, truncation=1.0, png=PNG, max_items=5)
    assert store.count() == 5


def _save_in_process(path: str, k: int, barrier, results) -> None:
    store = SQLiteStore(path, timeout=30)
    barrier.wait(30)  # every process saves at the same moment
    try:
        store.add(model_id="m", seed=1000 + k, truncation=1.0, png=PNG, tags=["p"], max_items=5)
        results.put("saved")
    except GalleryFullError:
        results.put("full")
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(repr(e))


def test_sqlite_quota_holds_across_processes(tmp_path):
    path = tmp_path / "g.sqlite"
    with SQLiteStore(path) as s:
        for seed in range(4):
            add(s, seed, [])
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_save_in_process, args=(str(path), k, barrier, results)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["full"] * 7 + ["saved"], outcomes
    with SQLiteStore(path) as s:
        assert s.count() == 5


def test_concurrent_saves_through_the_web_cannot_pass_the_quota(make_app):
    import httpx

    app = make_app(policy={"max_items": 5})

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                for seed in range(4):
                    assert (await c.post("/api/gallery", json={"seed": seed})).status_code == 201
                # all of them pass the early count (4 < 5) before any is rendered and inserted
                saves = await asyncio.gather(*(c.post("/api/gallery", json={"seed": 10 + k}) for k in range(8)))
                return saves, (await c.get("/api/gallery")).json()["total"]

    saves, total = asyncio.run(scenario())
    codes = sorted(r.status_code for r in saves)
    assert codes == [201] + [507] * 7 and total == 5, codes
    assert all("full" in r.json()["error"] for r in saves if r.status_code == 507)
