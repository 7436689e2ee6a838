"""End to end in a real browser: Playwright drives Debian's headless Chromium against `ganime serve`'s app.

Needs `pip install playwright` (no `playwright install`: it uses /usr/bin/chromium from `apt-get install
chromium`). Screenshots (desktop and phone width) go to $GANIME_TEST_ARTIFACTS, else tests/artifacts/.
"""

from __future__ import annotations

import pytest

from web.conftest import CHROMIUM, serving

pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright (no browser download)")
if not CHROMIUM.exists():
    pytest.skip(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect


@pytest.fixture
def server_url(make_app):
    with serving(make_app()) as url:
        yield url


def face_loaded(page, seed: str) -> None:
    """Wait until #face shows `seed` and its image has finished loading."""
    page.wait_for_function(
        "s => { const f = document.getElementById('face');"
        " return f.dataset.seed === s && f.complete && f.naturalWidth > 0 && !f.classList.contains('loading'); }",
        arg=seed,
    )


# The pixels the browser decoded for #face, hashed: unlike an element screenshot this does not depend on
# layout, scaling or CSS transitions (a screenshot taken mid-fade once made this test flaky).
FACE_DIGEST = """async () => {
  const f = document.getElementById('face');
  const c = document.createElement('canvas');
  c.width = f.naturalWidth;
  c.height = f.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(f, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  const hash = await crypto.subtle.digest('SHA-256', data);
  return [...new Uint8Array(hash)].map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def shown_seed(page) -> str:
    """The seed the page shows (its permalink reads "seed 123")."""
    return page.locator("#permalink").inner_text().removeprefix("seed ")


def face_digest(page) -> str:
    return page.evaluate(FACE_DIGEST)


def served_digest(url: str) -> str:
    """The same hash for the PNG the server sends (RGBA, as a canvas holds it)."""
    import hashlib
    import io
    import urllib.request

    from PIL import Image

    with urllib.request.urlopen(url, timeout=20) as r:
        return hashlib.sha256(Image.open(io.BytesIO(r.read())).convert("RGBA").tobytes()).hexdigest()


def test_new_face_permalink_save_and_filter_in_a_real_browser(page, server_url, artifacts):
    page.goto(server_url + "/")
    # controls are found by role and accessible name, as a screen reader would find them
    new_face = page.get_by_role("button", name="New face")
    save = page.get_by_role("button", name="Save to gallery")
    tags = page.get_by_role("textbox", name="tags")
    seed = shown_seed(page)
    assert seed.isdigit()
    face_loaded(page, seed)
    assert f"seed={seed}" in page.url
    expect(page.get_by_role("img", name=f"generated face, seed {seed}")).to_be_visible()
    first = face_digest(page)
    assert first == served_digest(f"{server_url}/api/face.png?seed={seed}")  # the seed's own pixels

    # "New face": another seed, another picture, and the address bar follows
    new_face.click()
    expect(page.locator("#permalink")).not_to_have_text(f"seed {seed}")
    second_seed = shown_seed(page)
    face_loaded(page, second_seed)
    assert f"seed={second_seed}" in page.url
    assert face_digest(page) != first
    page.go_back()  # history: back to the first face
    face_loaded(page, seed)
    assert face_digest(page) == first

    # the permalink brings the first face back, pixel for pixel
    page.goto(f"{server_url}/?seed={seed}")
    face_loaded(page, seed)
    expect(page.locator("#permalink")).to_have_text(f"seed {seed}")
    assert face_digest(page) == first
    download = page.get_by_role("link", name="Download PNG")
    assert f"seed={seed}" in download.get_attribute("href")
    assert download.get_attribute("download") == f"ganime-seed{seed}.png"

    # the truncation slider: another face for the same seed, kept in the permalink
    page.locator("#truncation").fill("0.5")
    face_loaded(page, seed)
    assert "t=0.5" in page.url and face_digest(page) != first
    expect(page.locator("#truncation-value")).to_have_text("0.50")
    page.locator("#truncation").fill("1")
    face_loaded(page, seed)
    assert "t=" not in page.url and face_digest(page) == first

    # save it with tags, then another face with another tag (Enter in the tags box submits too)
    tags.fill("smile, e2e-test")
    save.click()
    expect(page.locator("#status")).to_contain_text(f"Saved seed {seed}")
    expect(tags).to_have_value("")  # ready for the next face's tags
    expect(page.locator(f"#gallery li[data-seed='{seed}']")).to_have_count(1)
    new_face.click()
    expect(page.locator("#permalink")).not_to_have_text(f"seed {seed}")
    other_seed = shown_seed(page)
    tags.fill("other")
    tags.press("Enter")
    expect(page.locator("#gallery li[data-id]")).to_have_count(2)
    expect(page.locator("#gallery-count")).to_have_text("2 saved")

    # filter the gallery by the tag: only the first face
    page.get_by_role("searchbox", name="filter by tag").fill("e2e-test")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#gallery[data-tag='e2e-test'] li[data-id]")).to_have_count(1)
    expect(page.locator("#gallery li[data-id]").first).to_have_attribute("data-seed", seed)
    expect(page.locator("#gallery-count")).to_contain_text("1 tagged")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)"
    )
    # the tag cloud filters too, and "All" shows everything again
    page.locator("#tag-cloud button[data-tag='other']").click()
    expect(page.locator("#gallery[data-tag='other'] li[data-id]")).to_have_count(1)
    expect(page.locator("#gallery li[data-id]").first).to_have_attribute("data-seed", other_seed)
    page.get_by_role("button", name="All", exact=True).click()
    expect(page.locator("#gallery[data-tag=''] li[data-id]")).to_have_count(2)

    # the latent walk between the current seed and another one
    page.fill("#interp-frames", "12")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_function(
        "() => { const i = document.getElementById('interp-img'); return !i.hidden && i.complete && i.naturalWidth > 0; }"
    )
    expect(page.locator("#interp-status")).to_contain_text("Walking from seed")

    shot = artifacts / "web-desktop.png"
    page.screenshot(path=str(shot), full_page=True, animations="disabled")
    print(f"screenshot: {shot}")

    # delete from the gallery, after a confirmation: cancelled, nothing goes; confirmed, the item and its
    # now unused tag go
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name=f"delete seed {other_seed}").click()
    expect(page.locator("#gallery-status")).not_to_contain_text("Deleted")
    expect(page.locator("#gallery li[data-id]")).to_have_count(2)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"delete seed {other_seed}").click()
    expect(page.locator("#gallery li[data-id]")).to_have_count(1)
    expect(page.locator("#tag-cloud button[data-tag='other']")).to_have_count(0)

    # a phone-width screen: one column, nothing wider than the viewport
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server_url}/?seed={seed}")
    face_loaded(page, seed)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#face").bounding_box()
    assert box["width"] <= 390 and box["width"] > 300
    phone = artifacts / "web-phone.png"
    page.screenshot(path=str(phone), full_page=True, animations="disabled")
    print(f"screenshot: {phone}")

    assert page.problems == []  # no JS errors, no CSP violations, no failed loads


def api_post(url: str, body: dict, token: str | None = None) -> dict:
    import json
    import urllib.request

    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=20) as r:
        return json.loads(r.read())


def test_page_defects_from_issue_19_stay_fixed(page, server_url, artifacts):
    # a broken permalink says so, then shows a random face
    page.goto(f"{server_url}/?seed=abc&truncation=7")
    expect(page.locator("#status")).to_contain_text("“abc” is not a seed")
    expect(page.locator("#status")).to_contain_text("truncation “7”")
    assert shown_seed(page).isdigit()

    # a permalink's truncation is shown as it is, not snapped to the slider's steps
    page.goto(f"{server_url}/?seed=5&truncation=0.333")
    face_loaded(page, "5")
    expect(page.locator("#truncation-value")).to_have_text("0.333")
    assert float(page.locator("#truncation").input_value()) == pytest.approx(0.333)
    assert face_digest(page) == served_digest(f"{server_url}/api/face.png?seed=5&truncation=0.333")

    # a typed seed A survives moving the slider and new faces
    page.fill("#interp-a", "777")
    page.locator("#truncation").fill("0.6")
    face_loaded(page, "5")
    page.get_by_role("button", name="New face").click()
    expect(page.locator("#permalink")).not_to_have_text("seed 5")
    expect(page.locator("#interp-a")).to_have_value("777")

    # 65 saved, 60 drawn: the count says so and "More" draws the rest; 35 tags: "+5 more tags" shows them
    for s in range(65):
        api_post(f"{server_url}/api/gallery", {"seed": s, "tags": [f"t{s % 35:02d}", "all"]})
    page.goto(f"{server_url}/?seed=5")
    expect(page.locator("#gallery li[data-id]")).to_have_count(60)
    expect(page.locator("#gallery-count")).to_have_text("65 saved, showing 60")
    page.get_by_role("button", name="More faces").click()
    expect(page.locator("#gallery li[data-id]")).to_have_count(65)
    expect(page.locator("#gallery-count")).to_have_text("65 saved")
    expect(page.get_by_role("button", name="More faces")).to_be_hidden()
    expect(page.locator("#tag-cloud button")).to_have_count(30)
    page.get_by_role("button", name="+6 more tags").click()  # 36 tags: t00..t34 and "all"
    expect(page.locator("#tag-cloud button")).to_have_count(36)

    # a filter typed in capitals or full width is the stored tag, and is shown that way
    page.get_by_role("searchbox", name="filter by tag").fill("ＡＬＬ")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#gallery-count")).to_have_text("65 tagged “all”, showing 60")
    expect(page.get_by_role("searchbox", name="filter by tag")).to_have_value("all")
    page.screenshot(path=str(artifacts / "web-paging.png"), full_page=False, animations="disabled")
    assert page.problems == []


def test_a_public_server_page_needs_the_admin_link_to_save(page, make_app, artifacts):
    token = "browser-test-token-0123456789"
    with serving(make_app(policy={"token": token})) as url:
        api_post(f"{url}/api/gallery", {"seed": 3, "tags": ["kept"]}, token)
        page.goto(f"{url}/?seed=3")
        face_loaded(page, "3")
        expect(page.locator("#writes-note")).to_contain_text("admin link")
        expect(page.get_by_role("button", name="Save to gallery")).to_be_hidden()
        expect(page.locator("#picture-form")).to_be_visible()  # a POST that changes nothing: no token needed
        expect(page.locator("#gallery li[data-id]")).to_have_count(1)
        expect(page.get_by_role("button", name="delete seed 3")).to_be_hidden()
        page.screenshot(path=str(artifacts / "web-visitor.png"), full_page=True, animations="disabled")

        # the admin link: the token leaves the address bar and stays in this browser
        page.goto(f"{url}/?seed=4#token={token}")
        face_loaded(page, "4")
        assert "token" not in page.url
        page.get_by_role("textbox", name="tags").fill("admin")
        page.get_by_role("button", name="Save to gallery").click()
        expect(page.locator("#status")).to_contain_text("Saved seed 4")
        page.reload()
        face_loaded(page, "4")
        expect(page.get_by_role("button", name="delete seed 4")).to_be_visible()
        # framing is refused by the browser itself (CSP frame-ancestors 'none', X-Frame-Options DENY)
        page.set_content(f'<iframe id="f" src="{url}/" width="300" height="300"></iframe>')
        page.wait_for_function("() => document.getElementById('f').contentWindow !== null")
        page.wait_for_timeout(1500)
        assert len(page.frames) == 2 and page.frames[1].locator("#face").count() == 0
        assert any("frame-ancestors" in p for p in page.problems), page.problems
