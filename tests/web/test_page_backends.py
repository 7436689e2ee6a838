"""The one page on its other back ends, in Chromium: onnxruntime-web in the browser (`ganime export --web`)
and pre-rendered files (`ganime publish`); and one permalink that is the same face, within 2/255, on all
three back ends (torch behind the server, onnxruntime-web, files).

Needs playwright, /usr/bin/chromium and onnxruntime-web's files (never downloaded by a test: $GANIME_ORT_DIR
or the cache `bash scripts/setup.sh --test` fills).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ganime.errors import MissingDependencyError
from web.conftest import CHROMIUM, face_picture, face_pixels, make_policy, serving, serving_folder, wait_face

pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright (no browser download)")
if not CHROMIUM.exists():
    pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect

from ganime.web.site import find_ort, write_site

try:
    ORT = find_ort("wasm", fetch=False)
except MissingDependencyError as e:
    pytest.skip(f"needs onnxruntime-web: {e}", allow_module_level=True)

TOLERANCE = 2  # fp16 weights and onnxruntime-web's float32 kernels vs torch: at most 2 levels (test_browser_page)


@pytest.fixture(scope="module")
def onnx_site(tmp_path_factory, edit_generator_file):
    return write_site(edit_generator_file, tmp_path_factory.mktemp("onnx-site"), ort_dir=ORT, fetch=False)[0].parent


@pytest.fixture(scope="module")
def files_site(tmp_path_factory, edit_generator_file):
    from ganime.generate import load_generator
    from ganime.web.publish import publish

    out = tmp_path_factory.mktemp("files-site")
    publish(load_generator(edit_generator_file), out, 20, [0.7, 1.0], edit_amounts=(-2.0, -1.0, 1.0, 1.5), edit_seeds=8)
    return out


@pytest.fixture
def onnx_url(onnx_site):
    with serving_folder(onnx_site) as url:
        yield url


def test_in_the_browser_a_slider_moves_the_face_live(page, onnx_url, artifacts):
    page.goto(f"{onnx_url}/#seed=7&t=0.7")
    wait_face(page, "#seed=7&t=0.7")
    before = face_pixels(page)
    expect(page.locator("#backend-note")).to_contain_text("onnxruntime-web")
    slider = page.get_by_label("Red hair")
    # live: every input event draws (no release needed), the address bar follows
    slider.evaluate("e => { e.value = '1.5'; e.dispatchEvent(new Event('input')); }")
    wait_face(page, "#seed=7&t=0.7&e=hair-red:1.5")
    assert not np.array_equal(face_pixels(page), before)
    assert page.url.endswith("#seed=7&t=0.7&e=hair-red:1.5")
    page.screenshot(path=str(artifacts / "page-onnx.png"), full_page=True, animations="disabled")
    # faces per second with an edit, measured in this Chromium (printed; speed is not asserted)
    per_face = page.evaluate(
        "async () => { const t0 = performance.now(); for (let s = 0; s < 20; s++)"
        " await window.ganime.face(s, 0.7, { 'hair-red': 1.5 }); return (performance.now() - t0) / 20; }"
    )
    print(f"onnxruntime-web, 16 px tiny generator: {1000 / per_face:.0f} faces/s")
    assert page.problems == []


def test_in_the_browser_rounds_and_search_by_picture(page, onnx_url, edit_generator_file, tmp_path):
    from ganime.generate import load_generator

    page.goto(f"{onnx_url}/#seed=3")
    wait_face(page, "#seed=3")
    page.get_by_role("button", name="Pick one of 16").click()
    page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")
    keys = [b.get_attribute("data-key") for b in page.locator("#round-grid button").all()]
    assert len(set(keys)) == 16
    page.locator("#round-grid button").nth(2).click()
    wait_face(page, keys[2])
    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
    variations = [b.get_attribute("data-key") for b in page.locator("#round-grid button").all()]
    assert len(variations) == 16 and all(k.startswith(keys[2] + "&e=") for k in variations)
    page.get_by_role("button", name="Back").click()
    wait_face(page, "#seed=3")
    page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")

    # search by picture without a server: best of 64 seeds, then an evolution strategy on z
    gen = load_generator(edit_generator_file)
    target = gen.from_seeds([321])[0]
    page.set_input_files("#picture", str(face_picture(tmp_path, target)))
    page.wait_for_selector("body[data-inverted='1']", timeout=60_000)
    wait_face(page)
    found = face_pixels(page).astype(float)
    err = lambda a: float(((a - target) ** 2).mean())
    assert err(found) < 0.5 * err(gen.from_seeds([3])[0].astype(float))
    assert "#z=" in page.url
    assert page.problems == []


def test_the_static_site_shows_directions_as_pre_rendered_strips(page, files_site, artifacts):
    with serving_folder(files_site) as url:
        page.goto(f"{url}/#seed=2&t=0.7")
        wait_face(page, "#seed=2&t=0.7")
        expect(page.locator("#picture-form")).to_be_hidden()
        strip = page.get_by_role("group", name="Red hair")
        expect(strip.get_by_role("button")).to_have_count(5)  # 0 and the four amounts
        strip.get_by_role("button", name="Red hair 1.5").click()
        wait_face(page, "#seed=2&t=0.7&e=hair-red:1.5")
        page.wait_for_function("() => [...document.querySelectorAll('#sliders img')].every(i => i.complete && i.naturalWidth)")
        page.screenshot(path=str(artifacts / "page-files.png"), full_page=True, animations="disabled")
        # a round at truncation 1: the pick's pre-rendered variations (made at 0.7, so shown at 0.7); Back
        page.goto(f"{url}/#seed=2")
        wait_face(page, "#seed=2")
        page.get_by_role("button", name="Pick one of 16").click()
        page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")
        keys = [b.get_attribute("data-key") for b in page.locator("#round-grid button").all()]
        assert len(keys) == 16 and all(0 <= int(k.split("=")[1].split("&")[0]) < 8 for k in keys)  # seeds with strips
        page.locator("#round-grid button").nth(0).click()
        page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
        expect(page.locator("#round-grid button")).to_have_count(16)  # 4 directions x 4 amounts
        assert page.evaluate("[...document.querySelectorAll('#round-grid img')].every(i => i.naturalWidth === 16)")
        variation = page.locator("#round-grid button").nth(5).get_attribute("data-key")
        assert variation.startswith(keys[0] + "&t=0.7&e=")
        page.locator("#round-grid button").nth(5).click()
        wait_face(page, variation)
        page.get_by_role("button", name="Back").click()
        wait_face(page, keys[0])
        page.get_by_role("button", name="Back").click()
        wait_face(page, "#seed=2")
        # what was not rendered is explained, and the nearest face that was is shown
        page.goto(f"{url}/#seed=2&t=0.7&e=hair-red:0.5")
        expect(page.locator("#status")).to_contain_text("Red hair is pre-rendered at -2, -1, 1, 1.5, not 0.5")
        wait_face(page, "#seed=2&t=0.7")
        # seeds past the first 8 have no strips: none shown, a link to one explained
        page.goto(f"{url}/#seed=12&t=0.7")
        wait_face(page, "#seed=12&t=0.7")
        expect(page.locator("#directions")).to_be_hidden()
        page.goto(f"{url}/#seed=12&t=0.7&e=hair-red:1")
        expect(page.locator("#status")).to_contain_text("seed 12 has no pre-rendered edits (seeds 0 to 7 have them)")
        wait_face(page, "#seed=12&t=0.7")
        assert page.problems == []


def test_one_permalink_is_one_face_on_all_three_back_ends(page, onnx_url, files_site, edit_generator_file, tmp_path):
    from ganime.latent import encode_latent
    from ganime.web.app import create_app

    link = "#seed=2&t=0.7&e=hair-red:1.5"
    faces = {}
    with serving(create_app(edit_generator_file, store=tmp_path / "g.sqlite", policy=make_policy())) as url:
        page.goto(f"{url}/{link}")
        wait_face(page, link)
        faces["server"] = face_pixels(page).astype(int)
        z = encode_latent(np.random.default_rng(1).standard_normal(16).astype(np.float32))
        zlink = f"#z={z}&t=0.5&e=sefa-0:-2,eyes-blue:1"
        page.goto(f"{url}/{zlink}")
        wait_face(page, zlink)
        server_z = face_pixels(page).astype(int)
    page.goto(f"{onnx_url}/{link}")
    wait_face(page, link)
    faces["onnx"] = face_pixels(page).astype(int)
    page.goto(f"{onnx_url}/{zlink}")
    wait_face(page, zlink)
    onnx_z = face_pixels(page).astype(int)
    with serving_folder(files_site) as url:
        page.goto(f"{url}/{link}")
        wait_face(page, link)
        faces["files"] = face_pixels(page).astype(int)
    for name, face in faces.items():
        assert face.shape == (16, 16, 3), name
        assert np.abs(face - faces["server"]).max() <= TOLERANCE, name
    np.testing.assert_array_equal(faces["files"], faces["server"])  # both torch: the same bytes
    assert np.abs(onnx_z - server_z).max() <= TOLERANCE
    plain = np.asarray(Image.open(io.BytesIO((files_site / "faces/psi-0.7/000002.webp").read_bytes())).convert("RGB"))
    assert not np.array_equal(plain, faces["files"])  # the edit is in all three
    assert page.problems == []


def test_in_browser_page_defects_from_issue_30_stay_fixed(page, onnx_url, edit_generator_file, tmp_path):
    """The old in-browser page snapped a permalink's truncation to its 0.05 steps (0.333 -> 0.35, up to 93/255
    off), replaced broken permalinks without a word, and took seeds up to 2^63 where the server stops at 2^53."""
    from web.test_browser_page import cli_image

    page.goto(f"{onnx_url}/#seed=123&t=0.333")
    wait_face(page, "#seed=123&t=0.333")
    expect(page.locator("#truncation-value")).to_have_text("0.333")
    assert float(page.locator("#truncation").input_value()) == pytest.approx(0.333)
    want = cli_image(edit_generator_file, 123, tmp_path, 0.333).astype(int)
    assert np.abs(face_pixels(page).astype(int) - want).max() <= TOLERANCE
    page.goto(f"{onnx_url}/#seed=abc&t=0.5")
    expect(page.locator("#status")).to_contain_text("This link is broken: “abc” is not a seed (0 to 2^53 − 1)")
    wait_face(page)
    for seed in ("9007199254740992", "9223372036854775807"):  # 2^53 and 2^63 - 1: past the one seed range
        page.goto(f"{onnx_url}/#seed={seed}")
        expect(page.locator("#status")).to_contain_text(f"“{seed}” is not a seed")
    page.fill("#seed", "9223372036854775807")  # 19 digits: the field itself refuses it (pattern)
    assert page.locator("#seed").evaluate("e => e.validity.patternMismatch") is True
    page.fill("#seed", "9007199254740992")
    page.get_by_role("button", name="Draw").click()
    expect(page.locator("#status")).to_contain_text("A seed is a whole number from 0 to 2^53 − 1")
    assert page.problems == []
