"""The one page's edits in a real browser: faces per second while a direction slider moves (onnxruntime-web
WASM in Debian's headless Chromium), and seconds per picture for search by picture in the browser and on the
server, for a generator with directions (default: the shipped one; it needs its .directions files).

    python benchmarks/page_edits.py [GENERATOR] [--faces 100] [--ort-dir node_modules/onnxruntime-web]

A slider move is one face: `window.ganime.face` times seed -> latent, plus amount x direction (latent.js
applyEdits), the ONNX graph and the pixels on a canvas, as the live slider draws them (the page then shows
the canvas as a lossless PNG). Search by picture is timed from the file input to the found face drawn.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from browser_latency import IsolatedHandler

from ganime.device import cpu_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("generator", nargs="?", default=None)
    p.add_argument("--faces", type=int, default=100)
    p.add_argument("--ort-dir", type=Path, default=None)
    args = p.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from ganime.generate import load_generator
    from ganime.web.meta import resolve_generator
    from ganime.web.site import write_site

    gen = load_generator(resolve_generator(args.generator))
    directions = gen.directions
    if not len(directions):
        raise SystemExit(f"{gen.source} has no directions: make them with `ganime directions`")
    name = directions.names[0]
    tmp = Path(tempfile.mkdtemp(prefix="ganime-page-bench-"))
    write_site(gen, tmp / "site", ort_dir=args.ort_dir)
    picture = tmp / "picture.png"
    Image.fromarray(gen.from_seeds([5])[0]).resize((512, 512), Image.BICUBIC).save(picture)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(IsolatedHandler, directory=str(tmp / "site")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        for threads in sorted({1, os.cpu_count() or 1}):
            page = browser.new_page()
            page.goto(f"{url}/?threads={threads}#seed=0")
            page.wait_for_selector("body[data-state=drawn]", timeout=120_000)
            ms = page.evaluate(
                """async ([n, name]) => { for (let s = 0; s < 5; s++) await window.ganime.face(s, 1, { [name]: 1 });
                   const out = []; for (let s = 0; s < n; s++) out.push(await window.ganime.face(7, 1, { [name]: -3 + 6 * s / n }));
                   return out; }""",
                [args.faces, name],
            )
            rows.append((f"slider, onnxruntime-web WASM, {threads} thread(s)", statistics.median(ms)))
            if threads == 1:
                t0 = time.perf_counter()
                page.set_input_files("#picture", str(picture))
                page.wait_for_selector("body[data-inverted='1']", timeout=120_000)
                found = page.locator("#status").inner_text()
                rows.append((f"search by picture in the browser ({found})", (time.perf_counter() - t0) * 1000))
            page.close()
        browser.close()
    server.shutdown()

    from fastapi.testclient import TestClient

    from ganime.web.app import create_app
    from ganime.web.security import ServePolicy

    app = create_app(gen.source, store=tmp / "gallery.sqlite", generator=gen,
                     policy=ServePolicy(allowed_hosts=("testserver",), rate=0.0))
    with TestClient(app) as c:
        # as the page sends it: the model's size, JPEG when a PNG is over the server's 16 KiB body cap
        buf = io.BytesIO()
        Image.open(picture).convert("RGB").resize((gen.resolution,) * 2, Image.LANCZOS).save(buf, "JPEG", quality=92)
        t0 = time.perf_counter()
        r = c.post("/api/invert", content=buf.getvalue(), headers={"Content-Type": "image/jpeg"})
        if r.status_code != 200:
            raise SystemExit(f"POST /api/invert: {r.status_code} {r.text}")
        rows.append((f"search by picture on the server (POST /api/invert, error {r.json()['loss']:.4f})",
                     (time.perf_counter() - t0) * 1000))
    print(f"{gen.resolution} px generator {Path(gen.source).name}, direction {name}; "
          f"{os.cpu_count()} CPUs ({cpu_model()})")
    print("| what | median ms | per second |\n|---|---|---|")
    for what, ms in rows:
        print(f"| {what} | {ms:.1f} | {1000 / ms:.1f} |")


if __name__ == "__main__":
    main()
