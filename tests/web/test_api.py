"""The HTTP API: determinism, formats, limits, gallery CRUD, micro-batching under concurrency, the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from ganime.cli import main
from ganime.generate import default_generator_path, interpolate, load_generator, pretrained_path
from ganime.io import make_grid
from ganime.web.app import LIMITS, MAX_SEED
from ganime.web.batcher import BusyError, MicroBatcher


def png_pixels(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    return np.asarray(im.convert("RGB"))


# --- images ----------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_and_the_same_pixels_as_the_library(client, gen, make_app, tmp_path):
    from fastapi.testclient import TestClient

    first = client.get("/api/face.png", params={"seed": 123})
    again = client.get("/api/face.png", params={"seed": 123})
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.content == again.content
    np.testing.assert_array_equal(png_pixels(first.content), gen.from_seeds([123])[0])
    psi = client.get("/api/face.png", params={"seed": 123, "truncation": 0.5}).content
    np.testing.assert_array_equal(png_pixels(psi), gen.from_seeds([123], 0.5)[0])
    other = png_pixels(client.get("/api/face.png", params={"seed": 124}).content)
    assert np.abs(other.astype(int) - png_pixels(first.content)).mean() > 5  # visibly another face
    # a restarted server (model loaded again, truncation mean recomputed) sends the same bytes
    with TestClient(make_app(store=tmp_path / "other.sqlite")) as restarted:
        assert restarted.get("/api/face.png", params={"seed": 123}).content == first.content
        assert restarted.get("/api/face.png", params={"seed": 123, "truncation": 0.5}).content == psi


def test_sizes_grid_and_walk_formats(client, gen):
    native = gen.from_seeds([7])[0]
    big = png_pixels(client.get("/api/face.png", params={"seed": 7, "size": 64}).content)
    np.testing.assert_array_equal(big, np.kron(native, np.ones((4, 4, 1), np.uint8)))  # whole multiple: nearest
    assert png_pixels(client.get("/api/face.png", params={"seed": 7, "size": 50}).content).shape == (50, 50, 3)

    grid = client.get("/api/grid.png", params={"n": 6, "seed": 10, "truncation": 0.7})
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(png_pixels(grid.content), make_grid(gen.from_seeds(list(range(10, 16)), 0.7)))

    walk = client.get("/api/interpolate.gif", params={"a": 1, "b": 2, "frames": 5, "size": 32})
    assert walk.status_code == 200 and walk.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(walk.content))
    assert (gif.format, gif.n_frames, gif.size) == ("GIF", 5, (32, 32))
    again = client.get("/api/interpolate.gif", params={"a": 1, "b": 2, "frames": 5, "size": 32})
    assert again.content == walk.content
    # the walk ends on seed b's face (GIF palettes are lossy: compare loosely)
    gif.seek(4)
    last = np.asarray(gif.convert("RGB").resize((16, 16), Image.NEAREST)).astype(int)
    assert np.abs(last - interpolate(gen, 1, 2, 5)[-1]).mean() < 12


def test_random_face_reports_its_seed_and_cached_faces_revalidate(client):
    r = client.get("/api/face.png")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    seed = int(r.headers["x-seed"])
    same = client.get("/api/face.png", params={"seed": seed})
    assert same.content == r.content
    # a seeded face is fixed for this model, but another model may serve the same URL after a restart:
    # caches keep it and revalidate by ETag (a 304 runs no generator)
    assert same.headers["cache-control"] == "public, no-cache"
    etag = same.headers["etag"]
    url = f"/api/face.png?seed={seed}"
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):  # RFC 9110 If-None-Match forms
        cached = client.get(url, headers={"If-None-Match": header})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag, header
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # another truncation or size is another image with another tag
    assert client.get(url + "&size=32").headers["etag"] != etag
    assert client.get(url, params={"truncation": 0.5}, headers={"If-None-Match": etag}).status_code == 200
    grid = client.get("/api/grid.png", params={"n": 4})
    again = client.get("/api/grid.png", params={"n": 4}, headers={"If-None-Match": grid.headers["etag"]})
    assert again.status_code == 304


def test_gallery_answers_are_not_cached(client):
    item = client.post("/api/gallery", json={"seed": 3, "tags": ["a"]}).json()
    for url in ("/api/gallery", "/api/gallery?tag=a", "/api/tags", f"/api/gallery/{item['id']}"):
        assert client.get(url).headers["cache-control"] == "no-store", url  # they change with every save/delete
    assert client.get("/").headers["cache-control"] == "no-cache"


# --- limits: 4xx with a JSON error that says what is allowed, never a 500 --------------------------------

BAD_REQUESTS = [
    "/api/face.png?seed=-1",
    f"/api/face.png?seed={MAX_SEED + 1}",
    "/api/face.png?seed=abc",
    "/api/face.png?seed=1.5",
    "/api/face.png?seed=1&truncation=0",
    "/api/face.png?seed=1&truncation=1.01",
    "/api/face.png?seed=1&truncation=nan",
    "/api/face.png?seed=1&truncation=inf",
    "/api/face.png?seed=1&size=4",
    "/api/face.png?seed=1&size=100000",
    "/api/grid.png?n=65",
    "/api/grid.png?n=0",
    f"/api/grid.png?n=2&seed={MAX_SEED}",
    "/api/interpolate.gif?a=1&b=2&frames=121",
    "/api/interpolate.gif?a=1&b=2&frames=1",
    "/api/interpolate.gif?a=1",
    "/api/interpolate.gif?a=1&b=2&size=1024",
    "/api/interpolate.gif?a=1&b=2&fps=0",
    "/api/gallery?tag=" + "x" * 33,
    "/api/gallery?tag=no%20spaces",
    "/api/gallery?limit=0",
    "/api/gallery/not-an-id",
]


@pytest.mark.parametrize("url", BAD_REQUESTS)
def test_out_of_range_input_is_a_422_that_says_what_is_allowed(client, url):
    r = client.get(url)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] and body["limits"] == LIMITS


def test_odd_input_never_gives_a_500(client):
    odd = ["", "-0", "00", "1e3", "0x10", "%00", "9" * 400, "NaN", "-inf", "1,2", "[]", "null", "✓", "1;2"]
    urls = [f"/api/face.png?seed={v}" for v in odd] + [f"/api/face.png?seed=1&truncation={v}" for v in odd]
    urls += [f"/api/grid.png?n={v}" for v in odd] + [f"/api/interpolate.gif?a={v}&b=1&frames=2" for v in odd]
    urls += [f"/api/gallery?tag={v}" for v in odd] + [f"/api/gallery/{v}" for v in odd if v]
    for url in urls:
        assert client.get(url).status_code < 500, url
    bodies = [b"", b"{", b"[]", b"null", b'"x"', b'{"seed": "x"}', b'{"seed": 1, "tags": "a"}', b'{"seed": 1e400}']
    bodies += [b'{"seed": true}', b'{"seed": 1, "tags": [1]}', b'{"seed": 1, "tags": [null]}', "\xff".encode("latin1")]
    for body in bodies:
        r = client.post("/api/gallery", content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, body
        assert "error" in r.json()
    assert client.delete("/api/gallery/%00").status_code < 500
    # not declared JSON (a form, plain text): 415 that says what to send, and nothing saved
    for kwargs in ({"data": {"seed": "1"}}, {"content": b'{"seed": 1}', "headers": {"content-type": "text/plain"}}):
        r = client.post("/api/gallery", **kwargs)
        assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert client.get("/api/gallery").json()["total"] == 0


def test_request_bodies_are_capped(client):
    huge = {"seed": 1, "tags": ["a"], "pad": "x" * (LIMITS["body_bytes"] + 1)}
    r = client.post("/api/gallery", content=json.dumps(huge), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"x" * 1024

    r = client.post("/api/gallery", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413

    def valid_then_padding():  # a valid object in the first chunk must not be saved either
        yield b'{"seed": 1}'
        for _ in range(40):
            yield b" " * 1024

    r = client.post("/api/gallery", content=valid_then_padding(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and client.get("/api/gallery").json()["total"] == 0


# --- gallery ---------------------------------------------------------------------------------------------


def test_gallery_save_list_filter_get_delete(client):
    face = client.get("/api/face.png", params={"seed": 42, "truncation": 0.8}).content
    a = client.post("/api/gallery", json={"seed": 42, "truncation": 0.8, "tags": ["Smile", "red-hair", "smile"]})
    assert a.status_code == 201, a.text
    item = a.json()
    assert (
        item["tags"] == ["smile", "red-hair"] and item["seed"] == 42 and item["permalink"] == "/#seed=42&t=0.8"
    )
    b = client.post("/api/gallery", json={"seed": 7, "tags": ["smile"]}).json()
    c = client.post("/api/gallery", json={"seed": 8}).json()

    assert client.get(item["image_url"]).content == face  # saved image = the face shown for that seed
    everything = client.get("/api/gallery").json()
    assert [i["id"] for i in everything["items"]] == [c["id"], b["id"], item["id"]]  # newest first
    assert everything["total"] == 3
    smile = client.get("/api/gallery", params={"tag": "SMILE"}).json()
    assert {i["id"] for i in smile["items"]} == {item["id"], b["id"]} and smile["total"] == 2
    assert [i["id"] for i in client.get("/api/gallery", params={"tag": "red-hair"}).json()["items"]] == [item["id"]]
    assert client.get("/api/gallery", params={"tag": "nobody"}).json() == {"items": [], "total": 0, "tag": "nobody", "offset": 0}
    assert client.get("/api/tags").json() == {"smile": 2, "red-hair": 1}
    assert client.get(f"/api/gallery/{b['id']}").json()["seed"] == 7

    assert client.delete(f"/api/gallery/{item['id']}").status_code == 204
    assert client.get(f"/api/gallery/{item['id']}").status_code == 404
    assert client.get(item["image_url"]).status_code == 404
    assert client.delete(f"/api/gallery/{item['id']}").status_code == 404
    assert client.get("/api/tags").json() == {"smile": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"seed": 1, "tags": ["has space"]},
        {"seed": 1, "tags": ["x" * 33]},
        {"seed": 1, "tags": [f"t{i}" for i in range(9)]},
        {"seed": 1, "tags": ["-leading"]},
        {"seed": 1, "tags": ["<script>"]},
        {"seed": 1, "extra": 1},
        {"seed": -1},
        {"seed": MAX_SEED + 1},
        {"seed": 1, "truncation": 0},
        {"tags": ["a"]},
    ],
)
def test_bad_gallery_bodies_are_422(client, body):
    r = client.post("/api/gallery", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]
    assert client.get("/api/gallery").json()["total"] == 0


# --- micro-batching --------------------------------------------------------------------------------------


async def _concurrently(app, requests: list[tuple[str, dict]]) -> list:
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.get(url, params=params) for url, params in requests))


def test_concurrent_requests_are_batched_and_answered_exactly(make_app, gen):
    app = make_app(max_batch=64, max_wait_ms=50)
    requests = [("/api/face.png", {"seed": s, "truncation": 0.5 + (s % 3) / 4}) for s in range(40)]
    requests.append(("/api/grid.png", {"n": 4, "seed": 100}))
    responses = asyncio.run(_concurrently(app, requests))
    assert [r.status_code for r in responses] == [200] * len(requests)
    stats = app.state.batcher.stats
    assert stats.requests == len(requests) and stats.latents == 44
    assert stats.calls < len(requests) / 4 and stats.largest_batch > 8, stats
    # every face is the one its own seed and truncation give alone, whatever it was batched with
    for (_, params), r in zip(requests[:-1], responses):
        np.testing.assert_array_equal(png_pixels(r.content), gen.from_seeds([params["seed"]], params["truncation"])[0])
    np.testing.assert_array_equal(png_pixels(responses[-1].content), make_grid(gen.from_seeds(list(range(100, 104)))))


def test_concurrent_saves_and_deletes_lose_nothing(make_app, gen):
    import httpx

    app = make_app(max_batch=16, max_wait_ms=20)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                saves = await asyncio.gather(
                    *(c.post("/api/gallery", json={"seed": s, "tags": ["all", f"k{s % 3}"]}) for s in range(24))
                )
                ids = {r.json()["seed"]: r.json()["id"] for r in saves}
                deletes = await asyncio.gather(
                    *(c.delete(f"/api/gallery/{ids[s]}") for s in range(0, 24, 2)),
                    *(c.get("/api/gallery", params={"tag": "all"}) for _ in range(6)),
                )
                images = await asyncio.gather(*(c.get(f"/api/gallery/{ids[s]}/image.png") for s in range(1, 24, 2)))
                return saves, deletes, images, (await c.get("/api/gallery?limit=500")).json(), await c.get("/api/tags")

    saves, deletes, images, listing, tags = asyncio.run(scenario())
    assert [r.status_code for r in saves] == [201] * 24
    assert [r.status_code for r in deletes] == [204] * 12 + [200] * 6
    assert listing["total"] == 12 and sorted(i["seed"] for i in listing["items"]) == list(range(1, 24, 2))
    assert tags.json() == {"all": 12, "k0": 4, "k1": 4, "k2": 4}
    for seed, r in zip(range(1, 24, 2), images):  # each stored image is its own seed's face
        np.testing.assert_array_equal(png_pixels(r.content), gen.from_seeds([seed])[0])


def test_max_batch_1_turns_batching_off(make_app):
    app = make_app(max_batch=1, max_wait_ms=5)
    responses = asyncio.run(_concurrently(app, [("/api/face.png", {"seed": s}) for s in range(12)]))
    assert all(r.status_code == 200 for r in responses)
    assert app.state.batcher.stats.calls == 12


def test_inference_runs_off_the_event_loop_and_the_model_is_loaded_once(make_app, monkeypatch):
    import threading

    import httpx

    import ganime.web.app as web_app

    loads = []
    real_load = web_app.load_generator
    monkeypatch.setattr(web_app, "load_generator", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    app = make_app(max_batch=8, max_wait_ms=1)
    started, release = threading.Event(), threading.Event()
    real_generate = app.state.batcher.generate

    def blocking_generate(z, labels, psi):  # holds its batch until the test lets it go
        started.set()
        assert release.wait(30), "the test never released the generator"
        return real_generate(z, labels, psi)

    app.state.batcher.generate = blocking_generate

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                faces = [asyncio.create_task(c.get("/api/face.png", params={"seed": s})) for s in range(3)]
                assert await asyncio.to_thread(started.wait, 30)
                # a generator call is in progress: the loop still answers other requests (a generator on the
                # event loop would block these until it finished, and here it never would)
                others = await asyncio.wait_for(asyncio.gather(c.get("/api/info"), c.get("/api/gallery")), 30)
                busy = not any(f.done() for f in faces)
                release.set()
                return others, busy, await asyncio.gather(*faces)

    others, busy, faces = asyncio.run(scenario())
    assert [r.status_code for r in others] == [200, 200] and busy
    assert [r.status_code for r in faces] == [200] * 3
    assert len(loads) == 1 and app.state.batcher.stats.requests == 3  # one load, at start-up


def test_batcher_isolates_a_failing_request_and_reports_a_failing_generator():
    def generate(z, labels, psi):
        if torch.isnan(z).any():
            raise RuntimeError("generator exploded")
        return np.zeros((len(z), 2, 2, 3), np.uint8)

    def bad_finish(images):
        raise ValueError("this one only")

    async def scenario():
        b = MicroBatcher(generate, max_batch=8, max_wait_ms=20)
        ok, bad = await asyncio.gather(
            b.submit(torch.zeros(2, 4)), b.submit(torch.zeros(1, 4), finish=bad_finish), return_exceptions=True
        )
        assert ok.shape == (2, 2, 2, 3) and isinstance(bad, ValueError) and b.stats.calls == 1
        results = await asyncio.gather(
            b.submit(torch.zeros(1, 4)), b.submit(torch.full((1, 4), float("nan"))), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)  # one call for both: both see its error
        small = MicroBatcher(generate, max_queue=2)
        with pytest.raises(BusyError):
            await small.submit(torch.zeros(3, 4))
        await b.aclose()
        await small.aclose()

    asyncio.run(scenario())


# --- page, docs, CLI -------------------------------------------------------------------------------------


def test_page_static_files_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needed in ('id="face"', 'id="new-face"', 'id="save"', 'id="download"', 'id="truncation"', 'id="interp-form"'):
        assert needed in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # the one page, told that its back end is this server; its modules come from /static/
    assert 'data-backend="server"' in page.text and 'src="/static/app.js"' in page.text and "{{" not in page.text
    for module in ("app.js", "renderers.js", "latent.js", "gallery.js"):
        assert client.get(f"/static/{module}").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/face.png", "/api/grid.png", "/api/interpolate.gif", "/api/gallery", "/api/gallery/{item_id}",
              "/api/directions", "/api/invert"):
        assert p in paths
    assert set(paths["/api/gallery"]) == {"get", "post"} and "delete" in paths["/api/gallery/{item_id}"]


def test_serve_dry_run_and_clear_errors(generator_file, tmp_path, capsys, monkeypatch):
    import ganime.generate

    store = tmp_path / "g.sqlite"
    assert main(["serve", str(generator_file), "--store", str(store), "--dry-run"]) == 0
    assert "16 px" in capsys.readouterr().out and store.exists()

    monkeypatch.setattr(ganime.generate, "default_generator_path", lambda: None)  # not installed
    assert main(["serve", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "RUN_OR_CHECKPOINT" in err and ganime.generate.PRETRAINED_FILE in err and "Traceback" not in err
    monkeypatch.setattr(ganime.generate, "default_generator_path", lambda: generator_file)
    for args in (["serve", "--dry-run"], ["serve", "pretrained", "--dry-run"]):  # the shipped generator
        assert main(args) == 0
        assert f"generator {generator_file}" in capsys.readouterr().out

    assert main(["serve", str(tmp_path / "nope"), "--dry-run"]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(generator_file), "--store", str(store), "--port", str(port)]) == 2
    assert "pick another --port" in capsys.readouterr().err


@pytest.mark.skipif(default_generator_path() is None, reason="the pretrained generator is not in this install")
def test_serve_with_no_argument_uses_the_shipped_generator(capsys):
    assert main(["serve", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"generator {pretrained_path()}" in out and f"{load_generator(pretrained_path()).resolution} px" in out


def test_gallery_cli_list_and_export(client, tmp_path, capsys):
    store = tmp_path / "gallery.sqlite"  # the one the client fixture's app uses
    ids = [
        client.post("/api/gallery", json={"seed": s, "tags": tags}).json()["id"] for s, tags in [(1, ["a"]), (2, ["b"])]
    ]
    assert main(["gallery", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 face(s) saved" in out and ids[0] in out and ids[1] in out
    assert main(["gallery", "list", "--store", str(store), "--tag", "a", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [ids[0]] and rows[0]["tags"] == ["a"]

    assert main(["gallery", "export", str(tmp_path / "out"), "--store", str(tmp_path), "--tag", "b"]) == 0
    meta = json.loads((tmp_path / "out" / "gallery.json").read_text())
    assert [m["id"] for m in meta] == [ids[1]]
    assert (tmp_path / "out" / meta[0]["file"]).read_bytes() == client.get(f"/api/gallery/{ids[1]}/image.png").content
    assert main(["gallery", "list", "--store", str(store), "--tag", "bad tag"]) == 2

    # mistakes: a mistyped store is not created empty, a file is no export folder
    capsys.readouterr()
    assert main(["gallery", "list", "--store", str(tmp_path / "typo.sqlite")]) == 2
    assert "no gallery at" in capsys.readouterr().err and not (tmp_path / "typo.sqlite").exists()
    (tmp_path / "file.txt").write_text("x")
    assert main(["gallery", "export", str(tmp_path / "file.txt"), "--store", str(store)]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file.txt").read_text() == "x"



def test_the_page_title_comes_from_the_model_card_or_names_the_data(tmp_path):
    """A generator with a model card shows the card's title; a run on other data says "image" and names its
    data, never "anime" or "face" over data that is not faces."""
    from fastapi.testclient import TestClient

    from ganime.generate import save_generator
    from ganime.web.app import create_app
    from ganime.web.security import ServePolicy

    from .conftest import TEST_HOSTS, tiny_generator

    plain = tiny_generator()
    plain.meta = {"data": "/srv/pictures/cats.zip", "preset": "tutorial"}
    carded = tiny_generator()
    carded.meta = {"card": {"title": "This cat does not exist", "subtitle": "cats drawn by a GAN"}}
    cases = ((plain, "This image does not exist", "cats.zip"), (carded, "This cat does not exist", "Cats drawn by a GAN"))
    for i, (gen, title, named) in enumerate(cases):
        path = save_generator(gen, tmp_path / f"g{i}")
        app = create_app(path, tmp_path / f"s{i}.sqlite", policy=ServePolicy(allowed_hosts=TEST_HOSTS, rate=0.0))
        with TestClient(app) as c:
            page = c.get("/").text
            assert f'<h1 id="title">{title}</h1>' in page and named in page
            assert f"<title>{title} · ganime</title>" in page
            assert c.get("/api/info").json()["title"] == title
