"""Fixtures for the web tests: a tiny generator whose faces visibly differ by seed, apps and stores."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the web tests need the web extra: pip install 'ganime[web]'")

from ganime.config import ModelConfig
from ganime.generate import LoadedGenerator, load_generator, save_generator
from ganime.models import build_generator

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_generator() -> LoadedGenerator:
    """A 16 px, width-8 DCGAN with wider-than-DCGAN init: untrained, but seeds give clearly different images.

    (DCGAN's N(0, 0.02) init makes an untrained G output flat grey for every seed, which would let tests
    of "a different seed gives a different face" pass or fail by rounding.)
    """
    model = ModelConfig(resolution=16, g_width=8, d_width=8, z_dim=16)
    torch.manual_seed(0)
    G = build_generator(model)
    for m in G.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, 0.0, 0.2)
    G.eval().requires_grad_(False)
    return LoadedGenerator(G, model, "tiny", torch.device("cpu"), {})


@pytest.fixture(scope="session")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.safetensors + tiny.json, as `save_generator` writes them."""
    return save_generator(tiny_generator(), tmp_path_factory.mktemp("gen") / "tiny")


@pytest.fixture(scope="session")
def gen(generator_file: Path) -> LoadedGenerator:
    return load_generator(generator_file)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Never touch the real user data dir; restore torch's thread count (`serve` sets it)."""
    monkeypatch.setenv("GANIME_DATA_DIR", str(tmp_path / "data"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# TestClient's and httpx's default host names join the loopback ones (TestClient's client address,
# "testclient", counts as this machine); no rate limit or per-client render cap unless a test sets one
TEST_HOSTS = ("testserver", "test", "t", "localhost", "127.0.0.1", "::1")


def make_policy(**kwargs):
    from ganime.web.security import ServePolicy

    defaults = {"allowed_hosts": TEST_HOSTS, "local_hosts": (*TEST_HOSTS, "testclient"), "rate": 0.0}
    return ServePolicy(**{**defaults, "renders_per_client": 0, **kwargs})


@pytest.fixture
def make_app(generator_file: Path, tmp_path: Path):
    """create_app on the tiny generator with a fresh SQLite gallery; keyword arguments pass through
    (`policy=` keywords: a dict of ServePolicy fields over the test defaults)."""
    from ganime.web.app import create_app

    def make(**kwargs):
        kwargs.setdefault("store", tmp_path / "gallery.sqlite")
        kwargs["policy"] = make_policy(**kwargs.pop("policy", {}))
        return create_app(generator_file, **kwargs)

    return make


@pytest.fixture
def client(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        yield c


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go: $GANIME_TEST_ARTIFACTS, else tests/artifacts/ (git-ignored), kept after the run."""
    out = Path(os.environ.get("GANIME_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page():
    """A Chromium page (Debian's, through Playwright); `page.problems` collects console errors."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        # generous launch timeout: the test machines are 2 busy cores
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS, timeout=60_000)
        pg = browser.new_page(viewport={"width": 1000, "height": 900})
        pg.set_default_timeout(20_000)
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.problems = problems
        yield pg
        browser.close()


@pytest.fixture
def chromium_page(page):
    """The same Chromium page under the name the in-browser (onnxruntime-web) tests use."""
    return page


@contextlib.contextmanager
def serving(app):
    """`app` under uvicorn on a free loopback port, in a thread; yields its URL, stops it after."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)


DIRECTIONS = [  # name, label, group: one per group and a second colour, as the page groups them
    ("hair-red", "Red hair", "colours"),
    ("sefa-0", "Direction 1", "shape"),
    ("sefa-1", "Direction 2", "details"),
    ("eyes-blue", "Blue eyes", "colours"),
]


@pytest.fixture(scope="session")
def edit_generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generator with four unit directions beside it (tiny.directions.{safetensors,json}), in the
    format `ganime directions` writes."""
    import numpy as np

    from ganime.directions import Direction, Directions, save_directions

    path = save_generator(tiny_generator(), tmp_path_factory.mktemp("edit-gen") / "tiny")
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((len(DIRECTIONS), 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    entries = tuple(Direction(n, label, "sefa", g, 0.5, 3.0) for n, label, g in DIRECTIONS)
    save_directions(Directions(entries, torch.from_numpy(matrix)), path.with_name("tiny.directions.safetensors"))
    return path


@contextlib.contextmanager
def serving_folder(folder: Path):
    """A folder from Python's own static file server (no ganime code serving): yields its URL."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


# --- the one page (web/static) in Chromium, whatever its back end -------------------------------------------


def wait_face(page, key: str | None = None) -> None:
    """Wait until #face has loaded the face of permalink `key` ("#seed=3&t=0.7"; None: any face)."""
    page.wait_for_function(
        "k => { const f = document.getElementById('face'); return (k === null || f.dataset.key === k) &&"
        " document.body.dataset.state === 'drawn' && f.complete && f.naturalWidth > 0; }",
        arg=key,
    )


def face_pixels(page):
    """The face the page shows, uint8 HWC RGB at the image's own size (drawn 1:1 on a canvas to read it)."""
    import numpy as np

    size, data = page.evaluate(
        "() => { const f = document.getElementById('face'); const c = document.createElement('canvas');"
        " c.width = f.naturalWidth; c.height = f.naturalHeight; const x = c.getContext('2d'); x.drawImage(f, 0, 0);"
        " return [c.width, Array.from(x.getImageData(0, 0, c.width, c.height).data)]; }"
    )
    return np.array(data, np.uint8).reshape(size, size, 4)[..., :3]


def face_picture(tmp_path: Path, image, name: str = "picture.png", scale: int = 8) -> Path:
    """A picture to search with: a face, scaled up smoothly (as a photo would be larger than the model)."""
    from PIL import Image

    im = Image.fromarray(image)
    path = tmp_path / name
    im.resize((im.width * scale, im.height * scale), Image.BICUBIC).save(path)
    return path
