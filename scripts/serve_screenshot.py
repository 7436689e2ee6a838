"""Screenshot of the `ganime serve` page for the README (docs/images/serve.png).

Serves a generator (default: the shipped pretrained one) on a free loopback port with a throw-away gallery,
saves a few faces with tags, opens a face with edits (when the generator has directions), plays a round of
"pick one of 16" and its variations, starts a latent walk, and screenshots the page in Debian's headless
Chromium through Playwright (the same setup as tests/web/test_page_server.py).

    python scripts/serve_screenshot.py                          # -> docs/images/serve.png
    python scripts/serve_screenshot.py runs/emoji --out shot.png
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--no-proxy-server", "--disable-background-networking"]
FACE_LOADED = (
    "k => { const f = document.getElementById('face'); return f.dataset.key === k &&"
    " document.body.dataset.state === 'drawn' && f.complete && f.naturalWidth > 0; }"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", nargs="?", default=None, help="run dir / ckpt dir / .safetensors (default: shipped)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images" / "serve.png")
    p.add_argument("--seed", default="2026", help="the face shown")
    p.add_argument("--saved", default="11:smile,23:smile red,42:cat,7:smile", help="seed:tags saved to the gallery")
    p.add_argument("--edits", default="hair-blonde:2.5,long-hair:1.5", help="the face's edits (name:amount,...)")
    p.add_argument("--width", type=int, default=1000)
    args = p.parse_args()

    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from ganime.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(args.generator, Path(tmp) / "gallery.sqlite")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=60_000)
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                page.set_default_timeout(60_000)
                for entry in args.saved.split(","):
                    seed, _, tags = entry.partition(":")
                    page.goto(f"{url}/#seed={seed}")
                    page.wait_for_function(FACE_LOADED, arg=f"#seed={seed}")
                    page.fill("#tags", tags)
                    page.click("#save")
                    expect(page.locator("#status")).to_contain_text(f"Saved seed {seed}")
                names = {d["name"] for d in page.request.get(f"{url}/api/directions").json()["directions"]}
                edits = ",".join(e for e in args.edits.split(",") if e.split(":")[0] in names)
                key = f"#seed={args.seed}" + (f"&e={edits}" if edits else "")
                page.goto(f"{url}/{key}")
                page.wait_for_function(FACE_LOADED, arg=key)
                page.click("#start-round")
                page.wait_for_selector("#round-grid[data-round='1'][data-ready='1']")
                if names:  # a pick, then its variations in colour
                    page.locator("#round-grid button").nth(5).click()
                    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
                    page.get_by_role("radio", name="colours").click()
                    page.wait_for_selector("#round-grid[data-round='2'][data-ready='1']")
                    page.locator("#round-grid button").nth(2).click()  # round 3: around a coloured pick
                    page.wait_for_selector("#round-grid[data-round='3'][data-ready='1']")
                    page.wait_for_function("() => document.body.dataset.state === 'drawn'")
                page.fill("#interp-b", args.saved.split(":")[0])
                page.fill("#interp-frames", "24")
                page.click("#interpolate")
                page.wait_for_function(
                    "() => { const i = document.getElementById('interp-img');"
                    " return !i.hidden && i.complete && i.naturalWidth > 0; }"
                )
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)"
                )
                page.evaluate("window.scrollTo(0, 0)")  # the face sticks to the top of what is in view
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True, animations="disabled")
                browser.close()
        finally:
            server.should_exit = True
            thread.join(20)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
