"""End to end in a real browser: Playwright drives Debian's headless Chromium against `ganime serve`'s app.

Needs `pip install playwright` (no `playwright install`: it uses /usr/bin/chromium from `apt-get install
chromium`). Screenshots go to $GANIME_TEST_ARTIFACTS (e.g. tests/artifacts) or the test's tmp dir.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

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

pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright (no browser download)")
if not CHROMIUM.exists():
    pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_url(make_app):
    """The app under uvicorn on a free loopback port, in a thread; stopped after the test."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("GANIME_TEST_ARTIFACTS") or tmp_path / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1000, "height": 900})
        pg.set_default_timeout(20_000)
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.problems = problems
        yield pg
        browser.close()


def face_loaded(page, seed: str) -> None:
    """Wait until #face shows `seed` and its image has finished loading."""
    page.wait_for_function(
        "s => { const f = document.getElementById('face');"
        " return f.dataset.seed === s && f.complete && f.naturalWidth > 0 && !f.classList.contains('loading'); }",
        arg=seed,
    )


def test_new_face_permalink_save_and_filter_in_a_real_browser(page, server_url, artifacts):
    page.goto(server_url + "/")
    seed = page.locator("#permalink").inner_text()
    assert seed.isdigit()
    face_loaded(page, seed)
    assert f"seed={seed}" in page.url
    first = page.locator("#face").screenshot(animations="disabled")

    # "New face": another seed, another picture, and the address bar follows
    page.click("#new-face")
    expect(page.locator("#permalink")).not_to_have_text(seed)
    second_seed = page.locator("#permalink").inner_text()
    face_loaded(page, second_seed)
    assert f"seed={second_seed}" in page.url
    assert page.locator("#face").screenshot(animations="disabled") != first

    # the permalink brings the first face back, pixel for pixel
    page.goto(f"{server_url}/?seed={seed}")
    face_loaded(page, seed)
    expect(page.locator("#permalink")).to_have_text(seed)
    assert page.locator("#face").screenshot(animations="disabled") == first
    href = page.locator("#download").get_attribute("href")
    assert f"seed={seed}" in href and page.locator("#download").get_attribute("download") == f"ganime-seed{seed}.png"

    # save it with tags, then another face with another tag
    page.fill("#tags", "smile, e2e-test")
    page.click("#save")
    expect(page.locator("#status")).to_contain_text(f"Saved seed {seed}")
    expect(page.locator(f"#gallery li[data-seed='{seed}']")).to_have_count(1)
    page.click("#new-face")
    other = page.locator("#permalink")
    expect(other).not_to_have_text(seed)
    page.fill("#tags", "other")
    page.click("#save")
    expect(page.locator("#gallery li[data-id]")).to_have_count(2)

    # filter the gallery by the tag: only the first face
    page.fill("#gallery-tag", "e2e-test")
    page.click("#gallery-filter")
    expect(page.locator("#gallery[data-tag='e2e-test'] li[data-id]")).to_have_count(1)
    expect(page.locator("#gallery li[data-id]").first).to_have_attribute("data-seed", seed)
    expect(page.locator("#gallery-count")).to_contain_text("1 tagged")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)"
    )

    # the latent walk between the current seed and another one
    page.fill("#interp-frames", "12")
    page.click("#interpolate")
    page.wait_for_function(
        "() => { const i = document.getElementById('interp-img'); return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )
    expect(page.locator("#status")).to_contain_text("Walking from seed")

    shot = artifacts / "web-desktop.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    # a phone-width screen: one column, nothing wider than the viewport
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server_url}/?seed={seed}")
    face_loaded(page, seed)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#face").bounding_box()
    assert box["width"] <= 390 and box["width"] > 300
    phone = artifacts / "web-phone.png"
    page.screenshot(path=str(phone), full_page=True)
    print(f"screenshot: {phone}")

    assert page.problems == []  # no JS errors, no CSP violations, no failed loads
