"""The routes the one page needs for directions and search by picture: /api/directions, /api/face.png with
`edits` and `z`, POST /api/invert, and saving an edited face to the gallery."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ganime.generate import load_generator
from ganime.latent import decode_latent, encode_latent
from ganime.web.encode import encode_png
from web.conftest import DIRECTIONS


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
def edit_client(make_app, edit_generator_file, tmp_path):
    from ganime.web.app import create_app
    from web.conftest import make_policy

    app = create_app(edit_generator_file, store=tmp_path / "g.sqlite", policy=make_policy())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def edit_gen(edit_generator_file):
    return load_generator(edit_generator_file)


def test_directions_are_listed_with_their_groups(edit_client, client):
    body = edit_client.get("/api/directions").json()
    assert body["z_dim"] == 16
    assert [(d["name"], d["label"], d["group"]) for d in body["directions"]] == DIRECTIONS
    assert all(d["step"] == 0.5 and d["range"] == 3.0 for d in body["directions"])
    assert client.get("/api/directions").json()["directions"] == []  # a generator without directions


def test_an_edited_face_is_the_seed_moved_along_its_directions(edit_client, edit_gen):
    plain = edit_client.get("/api/face.png", params={"seed": 7, "truncation": 0.7})
    edited = edit_client.get("/api/face.png", params={"seed": 7, "truncation": 0.7, "edits": "hair-red:1.5,sefa-0:-2"})
    assert edited.status_code == 200 and edited.headers["etag"] != plain.headers["etag"]
    z = edit_gen.directions.apply(edit_gen.latents([7]), {"hair-red": 1.5, "sefa-0": -2.0})
    want = edit_gen.images(z, None, 0.7)[0]
    np.testing.assert_array_equal(png_pixels(edited.content), want)
    assert not np.array_equal(png_pixels(plain.content), want)
    # an amount of 0 is no edit: the same face and ETag as none
    zero = edit_client.get("/api/face.png", params={"seed": 7, "truncation": 0.7, "edits": "hair-red:0"})
    assert zero.headers["etag"] == plain.headers["etag"] and zero.content == plain.content


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ("nope:1", "no direction 'nope' for this generator (it has: hair-red, sefa-0, sefa-1, eyes-blue)"),
        ("hair-red:11", "amount must be within -10..10"),
        ("hair-red:nan", "amount must be within"),
        ("hair-red:x", "is not a number"),
        ("hair-red", "write name:amount"),
    ],
)
def test_bad_edits_are_refused_with_the_reason(edit_client, edits, message):
    r = edit_client.get("/api/face.png", params={"seed": 1, "edits": edits})
    assert r.status_code == 422 and message in r.json()["error"]


def test_a_latent_draws_its_face_and_is_checked(edit_client, edit_gen):
    z = encode_latent(edit_gen.latents([7]).numpy()[0])
    assert np.array_equal(decode_latent(z, 16), edit_gen.latents([7]).numpy()[0])
    by_seed = edit_client.get("/api/face.png", params={"seed": 7, "edits": "sefa-1:1"}).content
    by_z = edit_client.get("/api/face.png", params={"z": z, "edits": "sefa-1:1"})
    assert by_z.status_code == 200 and "x-seed" not in by_z.headers
    assert png_pixels(by_z.content).tolist() == png_pixels(by_seed).tolist()
    for bad, message in [(z[:-8], "58 bytes, not 64 (16 float32 values)"),
                         ("!!", "not base64url"),
                         (encode_latent(np.full(16, 1e9, np.float32)), "within -64..64")]:
        r = edit_client.get("/api/face.png", params={"z": bad})
        assert r.status_code == 422 and message in r.json()["error"], r.json()
    r = edit_client.get("/api/face.png", params={"z": z, "seed": 7})
    assert r.status_code == 422 and "not both" in r.json()["error"]


def test_invert_finds_a_face_near_the_picture(edit_client, edit_gen, monkeypatch):
    from ganime.web import edits

    monkeypatch.setattr(edits, "INVERT_SECONDS", 1.0)
    target = edit_gen.from_seeds([123])[0]
    r = edit_client.post("/api/invert", content=encode_png(target), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["permalink"] == f"/#z={body['z']}&t=1" and body["image"].startswith("data:image/png;base64,")
    face = png_pixels(edit_client.get("/api/face.png", params={"z": body["z"]}).content).astype(float)
    # nearer than the best of the seeds it started from, and much nearer than a random face
    start = edit_gen.from_seeds([body["start_seed"]])[0].astype(float)
    other = edit_gen.from_seeds([5])[0].astype(float)
    err = lambda a: float(((a - target) ** 2).mean())
    assert err(face) <= err(start) and err(face) < 0.5 * err(other)
    assert abs(body["loss"] - err(face) / 255**2) < 0.01
    # the found face keeps editing like any other
    edited = edit_client.get("/api/face.png", params={"z": body["z"], "edits": "hair-red:2"})
    assert edited.status_code == 200 and png_pixels(edited.content).astype(float).tolist() != face.tolist()


def test_invert_refuses_what_it_cannot_read_and_charges_the_rate_limit(make_app, edit_generator_file, tmp_path):
    from ganime.web.app import create_app
    from web.conftest import make_policy

    with TestClient(create_app(edit_generator_file, store=tmp_path / "g.sqlite", policy=make_policy())) as c:
        r = c.post("/api/invert", content=b"not a picture", headers={"Content-Type": "image/png"})
        assert r.status_code == 422 and "not a picture" in r.json()["error"]
        r = c.post("/api/invert", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 415 and "image/png" in r.json()["error"]
        big = encode_png(np.zeros((200, 200, 3), np.uint8))
        r = c.post("/api/invert", content=big + b"\0" * 20000, headers={"Content-Type": "image/png"})
        assert r.status_code == 413  # the server's body cap
    # a search costs its candidate faces: a budget that pays for a face does not pay for a search
    app = create_app(edit_generator_file, store=tmp_path / "h.sqlite", policy=make_policy(rate=0.001, burst=1.2))
    with TestClient(app) as c:
        assert c.get("/api/face.png", params={"seed": 1}).status_code == 200
    app = create_app(edit_generator_file, store=tmp_path / "h.sqlite", policy=make_policy(rate=0.001, burst=1.2))
    with TestClient(app) as c:
        r = c.post("/api/invert", content=encode_png(np.zeros((16, 16, 3), np.uint8)),
                   headers={"Content-Type": "image/png"})
        assert r.status_code == 429 and "retry-after" in r.headers


def test_an_edited_face_is_saved_as_drawn(edit_client, edit_gen):
    body = {"seed": 9, "truncation": 0.8, "tags": ["smile"], "edits": "eyes-blue:-1.5"}
    r = edit_client.post("/api/gallery", json=body)
    assert r.status_code == 201, r.text
    item = r.json()
    assert item["permalink"] == "/#seed=9&t=0.8&e=eyes-blue:-1.5" and item["tags"] == ["smile"]
    saved = edit_client.get(item["image_url"]).content
    drawn = edit_client.get("/api/face.png", params={"seed": 9, "truncation": 0.8, "edits": "eyes-blue:-1.5"}).content
    assert png_pixels(saved).tolist() == png_pixels(drawn).tolist()
    z = encode_latent(edit_gen.latents([3]).numpy()[0])
    r = edit_client.post("/api/gallery", json={"seed": 0, "z": z, "tags": []})
    assert r.status_code == 201 and r.json()["permalink"] == f"/#z={z}"
    r = edit_client.post("/api/gallery", json={"seed": 1, "edits": "nope:1"})
    assert r.status_code == 422 and "no direction 'nope'" in r.json()["error"]


def face_params(permalink: str) -> dict[str, str]:
    """A gallery permalink (/#seed=7&t=0.7&e=... or /#z=...&t=...&e=...) as /api/face.png's query, read the way
    the page reads it (web/static/app.js readLocation)."""
    assert permalink.startswith("/#"), permalink
    fragment = dict(part.split("=", 1) for part in permalink[2:].split("&"))
    names = {"seed": "seed", "z": "z", "t": "truncation", "e": "edits"}
    assert set(fragment) <= set(names), permalink
    return {names[k]: v for k, v in fragment.items()}


def test_gallery_items_keep_their_edits_and_latent_and_permalinks_redraw_them(edit_client, edit_gen):
    z = encode_latent(edit_gen.latents([3]).numpy()[0])
    saves = [
        ({"seed": 9, "truncation": 0.8, "edits": "eyes-blue:-1.50, sefa-0:0,hair-red:2"},
         "/#seed=9&t=0.8&e=eyes-blue:-1.5,hair-red:2"),  # numbers in the link as the page writes them
        ({"seed": 3, "z": z}, f"/#z={z}"),
        ({"seed": 3, "truncation": 0.6, "z": z, "edits": "sefa-1:1"}, f"/#z={z}&t=0.6&e=sefa-1:1"),
        ({"seed": 5, "truncation": 0.7}, "/#seed=5&t=0.7"),
    ]
    posted = []
    for body, link in saves:
        r = edit_client.post("/api/gallery", json={**body, "tags": ["mine"]})
        assert r.status_code == 201, r.text
        assert r.json()["permalink"] == link
        posted.append(r.json())
    listed = edit_client.get("/api/gallery", params={"tag": "mine"}).json()["items"][::-1]  # oldest first
    assert listed == posted
    assert [(i["edits"], i["z"]) for i in listed] == [
        ("eyes-blue:-1.5,hair-red:2.0", ""), ("", z), ("sefa-1:1.0", z), ("", "")
    ]  # stored as format_edits writes them (the ETag's form)
    for item in listed:
        assert edit_client.get(f"/api/gallery/{item['id']}").json() == item
        saved = edit_client.get(item["image_url"]).content
        drawn = edit_client.get("/api/face.png", params=face_params(item["permalink"]))
        assert drawn.status_code == 200 and drawn.content == saved, item["permalink"]
    # the edits and the latent change the face: a link to the plain seed would show another one
    plain = edit_client.get("/api/face.png", params={"seed": 9, "truncation": 0.8}).content
    assert plain != edit_client.get(listed[0]["image_url"]).content


def test_a_gallery_made_before_edits_were_kept_serves_and_saves(edit_generator_file, tmp_path):
    import sqlite3
    from contextlib import closing

    from ganime.web.app import create_app
    from web.conftest import make_policy
    from web.test_store import OLD_SCHEMA

    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path)) as con:
        con.executescript(OLD_SCHEMA)
    with TestClient(create_app(edit_generator_file, store=path, policy=make_policy())) as c:
        [old] = c.get("/api/gallery").json()["items"]
        assert old["seed"] == 42 and old["tags"] == ["kept"] and old["permalink"] == "/#seed=42&t=0.8"
        assert old["edits"] == "" and old["z"] == ""
        r = c.post("/api/gallery", json={"seed": 4, "edits": "hair-red:1", "tags": ["kept"]})
        assert r.status_code == 201, r.text
        items = c.get("/api/gallery", params={"tag": "kept"}).json()["items"]
        assert [i["permalink"] for i in items] == ["/#seed=4&e=hair-red:1", "/#seed=42&t=0.8"]
        drawn = c.get("/api/face.png", params=face_params(items[0]["permalink"])).content
        assert c.get(items[0]["image_url"]).content == drawn


@pytest.mark.parametrize(
    ("x", "js"),
    [(3.0, "3"), (-2.0, "-2"), (1.5, "1.5"), (0.8, "0.8"), (10.0, "10"), (1e-05, "0.00001"), (1e-07, "1e-7"),
     (0.1 + 0.2, "0.30000000000000004"), (1e21, "1e+21"), (0.0, "0")],
)
def test_permalink_numbers_are_written_as_the_page_writes_them(x, js):
    # web/static/app.js builds its fragment with String(number): a gallery link is the page's own address
    from ganime.web.gallery import js_number, permalink

    assert js_number(x) == js
    assert permalink(7, 0.5, f"hair-red:{x!r}") == f"/#seed=7&t=0.5&e=hair-red:{js}"
