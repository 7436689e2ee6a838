"""The in-browser page (web/site.py): Debian's headless Chromium draws faces with onnxruntime-web, and seed 123
shows the pixels `ganime generate --seed 123` writes, from a static folder and from `ganime serve`'s /browser/.

Needs playwright (no browser download), /usr/bin/chromium, and onnxruntime-web's files, which tests never
download: $GANIME_ORT_DIR or the cache that `bash scripts/setup.sh --test` fills with npm. Screenshots go to
$GANIME_TEST_ARTIFACTS, else tests/artifacts/.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganime import onnx_runtime
from ganime.cli import main
from ganime.errors import MissingDependencyError
from ganime.generate import default_generator_path
from ganime.latent import PORTABLE
from ganime.web.site import HEADERS, find_ort, write_site
from web.conftest import serving

CHROMIUM = Path("/usr/bin/chromium")  # the `chromium_page` fixture (conftest.py) launches it
# Browser vs `ganime generate`: fp16 weights (export keeps them only within 1/255 of torch) plus float32
# rounding of onnxruntime-web's WASM kernels vs torch's: at most 2 uint8 levels on any pixel, most exact.
TOLERANCE = 2

pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright (no browser download)")
if not CHROMIUM.exists():
    pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)
try:
    ORT = find_ort("wasm", fetch=False)
except MissingDependencyError as e:
    pytest.skip(f"needs onnxruntime-web: {e}", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, generator_file) -> Path:
    return write_site(generator_file, tmp_path_factory.mktemp("site"), ort_dir=ORT, fetch=False)[0].parent


@pytest.fixture
def static_url(site):
    """The site from Python's static file server (no ganime code on the server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served_url(make_app, monkeypatch):
    """`ganime serve`'s app (its /browser/ finds onnxruntime-web through $GANIME_ORT_DIR)."""
    monkeypatch.setenv("GANIME_ORT_DIR", str(ORT))
    with serving(make_app()) as url:
        yield url


@pytest.fixture
def page(chromium_page):
    return chromium_page


def canvas_pixels(page) -> np.ndarray:
    """The face the page shows, as uint8 HWC RGB at the generator's own resolution (the <img> holds a lossless
    PNG of the graph's pixels; drawn 1:1 on a canvas to read them)."""
    size, data = page.evaluate(
        "() => { const f = document.getElementById('face'); const c = document.createElement('canvas');"
        " c.width = f.naturalWidth; c.height = f.naturalHeight; const x = c.getContext('2d'); x.drawImage(f, 0, 0);"
        " return [c.width, Array.from(x.getImageData(0, 0, c.width, c.height).data)]; }"
    )
    return np.array(data, np.uint8).reshape(size, size, 4)[..., :3]


def cli_image(source: Path, seed: int, tmp: Path, truncation: float = 1.0) -> np.ndarray:
    out = tmp / f"cli-{seed}-{truncation}"
    assert main(["generate", str(source), "--seed", str(seed), "-n", "1", "--outdir", str(out),
                 "--truncation", str(truncation)]) == 0
    return np.asarray(Image.open(out / f"seed{seed:06d}.png").convert("RGB"))


def drawn(page, url: str) -> np.ndarray:
    page.goto(url)
    page.wait_for_selector("body[data-state=drawn]")
    return canvas_pixels(page)


def test_static_page_draws_the_cli_face_for_seed_123(page, static_url, generator_file, tmp_path, artifacts):
    got = drawn(page, f"{static_url}/?seed=123")
    want = cli_image(generator_file, 123, tmp_path)
    assert got.shape == want.shape == (16, 16, 3)
    diff = np.abs(got.astype(int) - want.astype(int))
    print(f"browser vs CLI: max {diff.max()} levels, {(diff > 0).mean():.1%} of values differ")
    assert diff.max() <= TOLERANCE, f"max {diff.max()} levels, {(diff > 0).mean():.1%} of values differ"
    assert page.locator("#permalink").inner_text() == "seed 123" and page.url.endswith("#seed=123")
    assert "wasm" in page.locator("#timing").inner_text()
    page.screenshot(path=str(artifacts / "browser-page-seed123.png"))
    # truncation: the slider's value reaches the graph's psi as `--truncation` does
    got = drawn(page, f"{static_url}/?seed=123&truncation=0.5")
    assert np.abs(got.astype(int) - cli_image(generator_file, 123, tmp_path, 0.5).astype(int)).max() <= TOLERANCE
    assert not np.array_equal(got, want)
    assert page.problems == []


def test_walk_ends_on_a_new_seed_with_its_cli_face(page, static_url, generator_file, tmp_path):
    drawn(page, f"{static_url}/?seed=7")
    page.fill("#frames", "4")
    page.click("#walk")
    page.wait_for_function("document.body.dataset.state === 'drawn' && document.getElementById('face').dataset.seed !== '7'")
    seed = int(page.locator("#face").get_attribute("data-seed"))
    assert page.url.endswith(f"#seed={seed}")
    want = cli_image(generator_file, seed, tmp_path)
    assert np.abs(canvas_pixels(page).astype(int) - want.astype(int)).max() <= TOLERANCE
    page.fill("#seed", "-3")
    page.click("#draw")  # the browser's own validation refuses it: nothing changes
    assert page.locator("#face").get_attribute("data-seed") == str(seed)
    assert page.problems == []


def test_served_page_matches_and_runs_wasm_threads(page, served_url, generator_file, tmp_path, artifacts):
    response = page.goto(f"{served_url}/browser")  # redirected to /browser/
    assert response.url.endswith("/browser/")
    assert response.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    got = drawn(page, f"{served_url}/browser/?seed=123")
    assert np.abs(got.astype(int) - cli_image(generator_file, 123, tmp_path).astype(int)).max() <= TOLERANCE
    # COOP + COEP make the page cross-origin isolated, so onnxruntime-web may use more than one thread
    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("window.ganime.threads === Math.min(4, navigator.hardwareConcurrency)") is True
    page.set_viewport_size({"width": 390, "height": 800})
    page.screenshot(path=str(artifacts / "browser-page-phone.png"), full_page=True)
    assert page.problems == []


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """The shipped generator with the portable latent scheme, as new runs record it. A shipped file saved before
    latent schemes (torch's seeds) is copied with its scheme set to portable: the same weights, other seeds."""
    shipped = default_generator_path()
    if shipped is None:
        pytest.skip("the pretrained generator is not installed")
    folder = tmp_path_factory.mktemp("pretrained")
    path = Path(shutil.copy(shipped, folder / shipped.name))
    meta = json.loads(shipped.with_suffix(".json").read_text())
    meta["model"]["latents"] = PORTABLE  # a no-op once the shipped generator records it
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_seed_123_is_one_face_in_torch_onnxruntime_and_both_pages(page, pretrained, tmp_path, monkeypatch, artifacts):
    """The issue's finish line: `ganime generate --seed 123`, `python -m ganime.onnx_runtime ... --seed 123`, the
    static page and `ganime serve`'s /browser/ page show the same face."""
    from ganime.web.app import create_app

    want = cli_image(pretrained, 123, tmp_path).astype(int)
    assert want.shape == (128, 128, 3) and want.std() > 20  # a real picture, not a flat one
    folder = write_site(pretrained, tmp_path / "site", ort_dir=ORT, fetch=False)[0].parent
    assert onnx_runtime.main([str(folder / "generator.onnx"), "--seed", "123", "-n", "1", "--outdir", str(tmp_path / "rt")]) == 0
    from_runtime = np.asarray(Image.open(tmp_path / "rt" / "seed000123.png").convert("RGB")).astype(int)
    assert np.abs(from_runtime - want).max() <= 1  # fp16 weights: within 1/255, as export checked

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        static = drawn(page, f"http://127.0.0.1:{server.server_address[1]}/?seed=123").astype(int)
    finally:
        server.shutdown()
    assert np.abs(static - want).max() <= TOLERANCE
    page.screenshot(path=str(artifacts / "browser-page-pretrained-seed123.png"))

    monkeypatch.setenv("GANIME_ORT_DIR", str(ORT))
    with serving(create_app(pretrained, store=tmp_path / "gallery.sqlite")) as url:
        served = drawn(page, f"{url}/browser/?seed=123").astype(int)
        server_png = page.request.get(f"{url}/api/face.png?seed=123").body()
    assert np.abs(served - want).max() <= TOLERANCE
    from_api = np.asarray(Image.open(io.BytesIO(server_png)).convert("RGB")).astype(int)
    assert np.array_equal(from_api, want)  # the server's own page draws with torch: the CLI's bytes
    assert page.problems == []
