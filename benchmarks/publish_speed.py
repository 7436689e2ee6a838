"""Speed of `ganime publish`: images/s rendering a static site (generator + encoding + atomic writes).

Renders --seeds seeds at each of --truncation into a temporary folder, once per format, with the threads
`ganime publish` uses (generator: cores - 1, encoding: one per core); then re-runs the same command (nothing left
to render: the cost of a resume check). Prints one JSON object with the CPU model and load average; the CPU
time per image (all threads) is the figure to compare on a shared machine.

    python benchmarks/publish_speed.py                        # the shipped generator, 512 seeds x 3
    python benchmarks/publish_speed.py --generator runs/x --seeds 2000 --formats webp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=None, help="run dir / ckpt dir / .safetensors (default: the shipped one)")
    p.add_argument("--seeds", type=int, default=512)
    p.add_argument("--truncation", default="0.5,0.7,1.0")
    p.add_argument("--formats", default="webp,png")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="generator threads (0 = as ganime publish: cores - 1)")
    p.add_argument("--encoders", type=int, default=0, help="encoding threads (0 = one per CPU)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if not 1 <= args.seeds <= 100_000:
        p.error("--seeds must be 1..100000")

    import torch

    from ganime.device import physical_cores, resolve_device, set_threads
    from ganime.generate import load_generator
    from ganime.web.meta import resolve_generator
    from ganime.web.publish import parse_truncations, publish

    threads = set_threads(args.threads or max(1, physical_cores() - 1))
    gen = load_generator(resolve_generator(args.generator), device=resolve_device(args.device))
    psis = parse_truncations(args.truncation)
    gen.images(gen.latents(list(range(8))), None, psis[0])  # warm-up (truncation mean, allocator)
    runs = []
    for fmt in args.formats.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            load0, cpu0 = os.getloadavg()[0], time.process_time()
            first = publish(gen, tmp, args.seeds, psis, fmt=fmt, batch=args.batch, encoders=args.encoders or None)
            cpu = time.process_time() - cpu0  # all threads: comparable on a shared machine, unlike images/s
            t0 = time.perf_counter()
            again = publish(gen, tmp, args.seeds, psis, fmt=fmt, batch=args.batch, encoders=args.encoders or None)
            resume = time.perf_counter() - t0
            files = list(Path(tmp, "faces").rglob(f"*.{fmt}"))
            runs.append(
                {
                    "format": fmt,
                    "images": first.rendered,
                    "seconds": round(first.seconds, 2),
                    "images_per_s": round(first.images_per_s, 1),
                    "cpu_ms_per_image": round(1000 * cpu / max(first.rendered, 1), 2),
                    "bytes_per_image": round(sum(f.stat().st_size for f in files) / len(files)),
                    "resume_rendered": again.rendered,
                    "resume_seconds": round(resume, 3),
                    "load_average_before": round(load0, 2),
                    "load_average_after": round(os.getloadavg()[0], 2),
                }
            )
    print(
        json.dumps(
            {
                "generator": str(gen.source),
                "resolution": gen.resolution,
                "device": str(gen.device),
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "torch_threads": threads,
                "torch": torch.__version__,
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
