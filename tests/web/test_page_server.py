"""The one page with `ganime serve`'s API as its back end, in Chromium: sliders, rounds of 16, search by
picture, and the page defects issue 30 found (each test here failed on the page before it)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from web.conftest import CHROMIUM, face_picture, face_pixels, make_policy, serving, wait_face

pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright (no browser download)")
if not CHROMIUM.exists():
    pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect


@pytest.fixture
def app(edit_generator_file, tmp_path):
    from ganime.web.app import create_app

    return create_app(edit_generator_file, store=tmp_path / "gallery.sqlite", policy=make_policy())


@pytest.fixture
def url(app):
    with serving(app) as u:
        yield u


def api_pixels(url: str) -> np.ndarray:
    import urllib.request

    with urllib.request.urlopen(url, timeout=20) as r:
        return np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))


def test_a_slider_moves_the_face_and_the_permalink_keeps_it(page, url):
    page.goto(f"{url}/#seed=7&t=0.7")
    wait_face(page, "#seed=7&t=0.7")
    before = face_pixels(page)
    expect(page.locator("#sliders .group-title")).to_have_text(["colours", "details", "shape"])
    page.get_by_label("Red hair").fill("1.5")
    wait_face(page, "#seed=7&t=0.7&e=hair-red:1.5")
    moved = face_pixels(page)
    assert not np.array_equal(moved, before)
    assert page.url.endswith("#seed=7&t=0.7&e=hair-red:1.5")
    np.testing.assert_array_equal(moved, api_pixels(f"{url}/api/face.png?seed=7&truncation=0.7&edits=hair-red:1.5"))
    # the permalink opens the same face, its slider where it was
    page.goto(f"{url}/#seed=7&t=0.7&e=hair-red:1.5,sefa-0:-2")
    wait_face(page, "#seed=7&t=0.7&e=hair-red:1.5,sefa-0:-2")
    assert page.get_by_label("Red hair").input_value() == "1.5" and page.get_by_label("Direction 1").input_value() == "-2"
    page.get_by_role("button", name="Reset").click()
    wait_face(page, "#seed=7&t=0.7")
    np.testing.assert_array_equal(face_pixels(page), before)
    assert page.problems == []


def test_rounds_of_16_then_variations_and_back(page, url, artifacts):
    page.goto(f"{url}/#seed=3")
    wait_face(page, "#seed=3")
    page.get_by_role("button", name="Pick one of 16").click()
    grid = page.locator("#round-grid")
    page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")
    first = grid.locator("button")
    expect(first).to_have_count(16)
    keys = [b.get_attribute("data-key") for b in first.all()]
    assert len(set(keys)) == 16 and all(k.startswith("#seed=") and "&e=" not in k for k in keys)
    assert page.evaluate("[...document.querySelectorAll('#round-grid img')].every(i => i.naturalWidth === 16)")
    first.nth(4).click()
    wait_face(page, keys[4])
    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
    expect(page.locator("#rounds-title")).to_contain_text("Round 2")
    variations = [b.get_attribute("data-key") for b in grid.locator("button").all()]
    assert len(variations) == 16 and all(k.startswith(keys[4] + "&e=") for k in variations)
    # only colours: every variation moves hair-red or eyes-blue, nothing else
    page.get_by_role("radio", name="colours").click()
    page.wait_for_function("() => document.querySelector('#round-groups [aria-checked=true]').dataset.group === 'colours'")
    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
    colours = [b.get_attribute("data-key") for b in grid.locator("button").all()]
    names = {part.split(":")[0] for k in colours for part in k.split("&e=")[1].split(",")}
    assert names <= {"hair-red", "eyes-blue"} and names
    page.screenshot(path=str(artifacts / "page-rounds.png"), full_page=True, animations="disabled")
    pick2 = colours[7]
    grid.locator("button").nth(7).click()
    wait_face(page, pick2)
    page.wait_for_selector("#round-grid[data-round='3'][data-ready='1']")
    third = [b.get_attribute("data-key") for b in grid.locator("button").all()]
    edits_of = lambda k: dict(p.split(":") for p in k.split("&e=")[1].split(","))
    base = edits_of(pick2)
    for k in third:  # around the second pick: one or two directions moved, the rest kept
        moved = {n for n in set(base) | set(edits_of(k)) if base.get(n) != edits_of(k).get(n)}
        assert 1 <= len(moved) <= 2 and k.startswith(pick2.split("&e=")[0]), (pick2, k)
    # Back: the previous round and the face picked there
    page.get_by_role("button", name="Back").click()
    wait_face(page, keys[4])
    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
    page.get_by_role("button", name="Back").click()
    wait_face(page, "#seed=3")
    page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")
    assert [b.get_attribute("data-key") for b in grid.locator("button").all()] == keys
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#rounds")).to_be_hidden()
    assert page.problems == []


def test_search_by_picture_then_edit_and_save(page, url, edit_generator_file, tmp_path, monkeypatch):
    from ganime.generate import load_generator
    from ganime.web import edits

    monkeypatch.setattr(edits, "INVERT_SECONDS", 1.0)
    gen = load_generator(edit_generator_file)
    target = gen.from_seeds([123])[0]
    page.goto(f"{url}/#seed=5")
    wait_face(page, "#seed=5")
    page.set_input_files("#picture", str(face_picture(tmp_path, target)))
    page.wait_for_selector("body[data-inverted='1']")
    expect(page.locator("#status")).to_contain_text("Found the nearest face")
    assert "#z=" in page.url
    wait_face(page)
    found = face_pixels(page).astype(float)
    err = lambda a: float(((a - target) ** 2).mean())
    assert err(found) < 0.5 * err(gen.from_seeds([5])[0].astype(float))
    key = page.url[page.url.index("#"):]
    page.get_by_label("Blue eyes").fill("2")
    wait_face(page, key + "&e=eyes-blue:2")
    page.get_by_role("textbox", name="tags").fill("found")
    page.get_by_role("button", name="Save to gallery").click()
    expect(page.locator("#status")).to_contain_text("Saved a face found by picture with its edits as found")
    expect(page.locator("#gallery li[data-id]")).to_have_count(1)
    assert page.problems == []


def test_issue_30_page_defects_stay_fixed(page, url, app, monkeypatch):
    from ganime.web import served

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/face.png" in r.url else None)
    # a broken permalink says what is wrong, right under the face (not below the gallery), and is read out
    page.goto(f"{url}/#seed=abc&t=2&e=nope:1")
    status = page.locator("#status")
    expect(status).to_contain_text("“abc” is not a seed")
    expect(status).to_contain_text("truncation “2” is not in (0, 1]")
    expect(status).to_contain_text("no direction “nope” here")
    assert status.get_attribute("aria-live") == "polite"
    wait_face(page)
    face, box = page.locator("#face").bounding_box(), status.bounding_box()
    assert 0 <= box["y"] - (face["y"] + face["height"]) < 40 and box["y"] + box["height"] < 900  # seen without scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    face, box = page.locator("#face").bounding_box(), status.bounding_box()
    assert 0 <= box["y"] - (face["y"] + face["height"]) < 40 and box["y"] + box["height"] < 844
    page.set_viewport_size({"width": 1000, "height": 900})

    # faces at the model's own size (16 px here), scaled smoothly by the browser: 1 rate unit, not 5
    assert requests and not any("size=" in r for r in requests)
    assert page.evaluate("document.getElementById('face').naturalWidth") == 16
    assert page.evaluate("getComputedStyle(document.getElementById('face')).imageRendering") == "auto"

    # one seed range: 2^53 - 1 is a seed, 2^53 is not
    page.goto(f"{url}/#seed=9007199254740991")
    wait_face(page, "#seed=9007199254740991")
    page.goto(f"{url}/#seed=9007199254740992")
    expect(status).to_contain_text("“9007199254740992” is not a seed (0 to 2^53 − 1)")
    page.fill("#seed", "9007199254740992")
    page.get_by_role("button", name="Draw").click()
    expect(status).to_contain_text("A seed is a whole number from 0 to 2^53 − 1")

    # the walk's form cannot ask for more frames than the server's pixel cap allows at the model's size
    monkeypatch.setitem(served.LIMITS, "pixels_per_request", 16 * 16 * 10)
    monkeypatch.setattr(served, "MAX_PIXELS", 16 * 16 * 10)
    page.goto(f"{url}/#seed=1")
    page.reload()  # a fragment alone does not load the page again: /api/info is read again
    wait_face(page, "#seed=1")
    frames = page.locator("#interp-frames")
    assert frames.get_attribute("max") == "10"
    frames.fill("11")
    assert frames.evaluate("e => e.validity.rangeOverflow") is True
    # and when the server refuses anyway (its cap changed since the page loaded), its reason is shown
    monkeypatch.setattr(served, "MAX_PIXELS", 16 * 16 * 5)
    frames.fill("8")
    page.get_by_role("button", name="Animate").click()
    expect(page.locator("#interp-status")).to_contain_text("8 frames of 16 px is 2048 pixels; at most 1280 per request")
    expect(page.locator("#interp-img")).to_be_hidden()
    frames.fill("4")
    page.get_by_role("button", name="Animate").click()
    expect(page.locator("#interp-status")).to_contain_text("Walking from seed 1")
    # a face the server refuses says why, under the face
    page.goto(f"{url}/#seed=1&e=hair-red:9")
    wait_face(page, "#seed=1&e=hair-red:9")
    monkeypatch.setattr(served, "MAX_PIXELS", 10)
    page.get_by_label("Red hair").fill("1")
    expect(status).to_contain_text("Could not draw seed 1: the face is 256 pixels; at most 10 per request")
    assert [p for p in page.problems if "422" not in p] == []  # the refused requests are logged by Chromium
