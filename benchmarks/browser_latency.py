"""Milliseconds per face: the browser page (onnxruntime-web WASM in headless Chromium) vs onnxruntime in Python
vs PyTorch, on this machine, for the shipped 64 px generator; and what a visitor downloads.

    python benchmarks/browser_latency.py [--faces 200] [--ort-dir node_modules/onnxruntime-web]

Each backend draws seeds 0, 1, 2, ... one face per call (batch 1, as a visitor does): seed -> latent -> G ->
uint8 pixels (the browser also puts them on its canvas). Warm-up calls first; median and fastest reported.
The shipped weights are used with the portable latent scheme (timing does not depend on it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnxruntime
import torch

from ganime.device import cpu_model
from ganime.generate import default_generator_path, load_generator
from ganime.latent import PORTABLE
from ganime.onnx_runtime import OnnxGenerator
from ganime.web.site import HEADERS, ORT_VERSION, write_site


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with the page's headers (cross-origin isolation lets onnxruntime-web run threads)."""

    def end_headers(self) -> None:
        for k, v in HEADERS.items():
            self.send_header(k, v)
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


def python_ms(fn, faces: int, warmup: int = 10) -> list[float]:
    for s in range(warmup):
        fn(s)
    out = []
    for s in range(faces):
        t = time.perf_counter()
        fn(s)
        out.append((time.perf_counter() - t) * 1000)
    return out


def browser_ms(url: str, faces: int, threads: int, warmup: int = 10) -> tuple[list[float], str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{url}/?seed=0&threads={threads}")
        page.wait_for_selector("body[data-state=drawn]", timeout=60_000)
        times = page.evaluate(
            """async ([warmup, faces]) => {
                 for (let s = 0; s < warmup; s++) await window.ganime.face(s);
                 const out = [];
                 for (let s = 0; s < faces; s++) out.push(await window.ganime.face(s));
                 return out; }""",
            [warmup, faces],
        )
        used = page.evaluate("`${window.ganime.backend}, ${window.ganime.threads} threads, isolated ${crossOriginIsolated}`")
        browser.close()
    return times, used


def row(name: str, ms: list[float]) -> str:
    return f"| {name} | {statistics.median(ms):.1f} ms | {min(ms):.1f} ms | {1000 / statistics.median(ms):.0f} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=200)
    p.add_argument("--ort-dir", type=Path, default=None)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ganime-bench-"))
    try:
        shipped = default_generator_path()
        gen_path = Path(shutil.copy(shipped, tmp / shipped.name))
        meta = json.loads(shipped.with_suffix(".json").read_text())
        meta["model"]["latents"] = PORTABLE
        gen_path.with_suffix(".json").write_text(json.dumps(meta))
        site = tmp / "site"
        files = write_site(gen_path, site, ort_dir=args.ort_dir)
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(IsolatedHandler, directory=str(site)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"

        rows = []
        for threads in (1, os.cpu_count() or 1):
            ms, used = browser_ms(url, args.faces, threads)
            rows.append(row(f"browser, onnxruntime-web {ORT_VERSION} ({used})", ms))
        for threads in (1, os.cpu_count() or 1):
            runtime = OnnxGenerator(site / "generator.onnx", threads=threads)
            rows.append(row(f"Python onnxruntime {onnxruntime.__version__}, {threads} threads (fp16 weights)",
                            python_ms(lambda s, r=runtime: r.from_seeds([s]), args.faces)))
        gen = load_generator(gen_path)
        for threads in (1, os.cpu_count() or 1):
            torch.set_num_threads(threads)
            rows.append(row(f"PyTorch {torch.__version__}, {threads} threads",
                            python_ms(lambda s: gen.from_seeds([s]), args.faces)))
        server.shutdown()

        sizes = {f.name: f.stat().st_size for f in files}
        print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"{args.faces} faces per backend, batch 1\n")
        print("| backend | median per face | fastest | faces/s |\n|---|---:|---:|---:|")
        print("\n".join(rows))
        print(f"\nsite: {sum(sizes.values()) / 1e6:.1f} MB in {len(sizes)} files; "
              + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:3]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
