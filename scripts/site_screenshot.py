"""Screenshot of a `ganime publish` static site for the README (docs/images/site.png).

Publishes --seeds seeds of a generator (default: the shipped one) at three truncations into a temporary
folder, serves it with Python's static file server on a free loopback port, opens a permalink in Debian's
headless Chromium through Playwright and screenshots the page.

    python scripts/site_screenshot.py                         # -> docs/images/site.png
    python scripts/site_screenshot.py --browser               # -> docs/images/browser.png (export --web page)

With --browser it screenshots the in-browser page instead (`ganime export --web`: the face drawn by
onnxruntime-web in Chromium), at #seed=--seed with --edits moved along the generator's directions. Both are
the one page of `ganime serve` (web/static) with another back end; the static site shows each direction as a
strip of pre-rendered faces (published at -2, -1, 1, 2).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--no-proxy-server", "--disable-background-networking"]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", nargs="?", default=None, help="run dir / ckpt dir / .safetensors (default: shipped)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images" / "site.png")
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--seed", default="11", help="the face shown")
    p.add_argument("--browser", action="store_true", help="the export --web page (faces drawn in the browser)")
    p.add_argument("--edits", default="hair-blonde:2.5,long-hair:1.5", help="--browser: the face's edits")
    p.add_argument("--height", type=int, default=760)
    args = p.parse_args()
    if args.browser and args.out.name == "site.png":
        args.out = args.out.with_name("browser.png")

    from playwright.sync_api import sync_playwright

    from ganime.generate import load_generator
    from ganime.web.meta import resolve_generator
    from ganime.web.publish import publish

    with tempfile.TemporaryDirectory() as tmp:
        if args.browser:
            from ganime.web.site import write_site

            gen = load_generator(resolve_generator(args.generator))
            write_site(gen, tmp)
            names = set(gen.directions.names)
            edits = ",".join(e for e in args.edits.split(",") if e.split(":")[0] in names)
            query = f"#seed={args.seed}" + (f"&e={edits}" if edits else "")
            ready = "() => document.body.dataset.state === 'drawn'"
        else:
            publish(load_generator(resolve_generator(args.generator)), tmp, args.seeds, [0.5, 0.7, 1.0])
            query = f"#seed={args.seed}&t=0.7"
            ready = (
                "() => [...document.querySelectorAll('img')].every(i => !i.getAttribute('src') || (i.complete && i.naturalWidth))"
                " && document.body.dataset.state === 'drawn'"
            )
        handler = functools.partial(Quiet, directory=tmp)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=60_000)
                page = browser.new_page(viewport={"width": 1000, "height": args.height})
                page.set_default_timeout(60_000)
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/{query}")
                page.wait_for_function(ready)
                page.evaluate("window.scrollTo(0, 0)")  # the face sticks to the top of what is in view
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True, animations="disabled")
                browser.close()
        finally:
            server.shutdown()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
