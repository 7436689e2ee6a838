"""Image quality per CPU-minute: `tutorial` and `modern` trained for the same wall time, SWD of each.

    python benchmarks/quality_per_minute.py --minutes 10
    python benchmarks/quality_per_minute.py --data PATH --minutes 10

Both presets train at 64 px on --data (default: the shipped emoji set) for --minutes each, one after the
other, in this process, with their own settings (`modern` picks its precision/layout with `auto`). Each run
is then sampled from what a user gets (`ganime generate`: the EMA generator when the recipe keeps one) and
scored with `ganime.evaluate` (SWD x 1e3 on Laplacian-pyramid patches, lower is better) against the same real
images. Prints steps, kimg and SWD of each; the last line is `swd_ratio_modern_vs_tutorial: X.XX` (goal <= 0.5).
On a shared machine the two runs may see different load: compare the kimg each reached.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganime
from ganime.config import override, preset
from ganime.device import cpu_model
from ganime.eval_report import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="images (default: the shipped emoji set)")
    ap.add_argument("--minutes", type=float, default=10.0, help="training time of each preset (default 10)")
    ap.add_argument("--n", type=int, default=1024, help="images per SWD evaluation (default 1024)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = physical cores)")
    ap.add_argument("--out", default="", help="keep the two runs here (default: a temporary folder)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        swd = {}
        for name in ("tutorial", "modern"):
            cfg = override(
                preset(name), minutes=args.minutes, epochs=0, threads=args.threads,
                **{"data.path": args.data, "model.resolution": 64},
            )
            res = ganime.train(cfg, root / name, progress=False)
            report = evaluate(res.checkpoint, data=args.data or None, metrics="swd", n=args.n, seed=0, write=False)
            swd[name] = float(report.metrics["swd"])
            print(
                f"{name:9s} {res.step:6d} steps {res.images_seen / 1000:7.1f} kimg in {res.seconds:5.0f} s   "
                f"SWD {swd[name]:7.1f}  (n_real {report.n_real}, n_fake {report.n_fake})",
                flush=True,
            )
    print(f"cpu: {cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.minutes:g} min each; wall time {time.perf_counter() - t_start:.0f} s")
    print(f"swd_ratio_modern_vs_tutorial: {swd['modern'] / swd['tutorial']:.2f}")


if __name__ == "__main__":
    main()
