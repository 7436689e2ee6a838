"""Generator latency, PyTorch vs onnxruntime, on this CPU: the 64 px tutorial DCGAN (weights untrained).

    python benchmarks/onnx_latency.py [--threads 2] [--seconds 3]

Both backends get the same intra-op thread count and the same latents; each (backend, batch) is warmed up,
then timed for about --seconds; the median and the fastest call are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import ganime
from ganime.config import preset
from ganime.device import cpu_model
from ganime.export import export_onnx
from ganime.generate import LoadedGenerator
from ganime.models import build_generator
from ganime.onnx_runtime import OnnxGenerator


def time_calls(fn, seconds: float, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads for both backends"
    )
    p.add_argument("--seconds", type=float, default=3.0, help="timing budget per (backend, batch)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = preset("tutorial").model  # DCGAN, 64 px, z 128, ngf 64: 3.8 M parameters
    torch.manual_seed(0)
    G = build_generator(model).eval().requires_grad_(False)
    gen = LoadedGenerator(G, model, "untrained tutorial DCGAN", torch.device("cpu"), {})
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(gen, Path(tmp) / "generator.onnx")
        onnx_mb = path.stat().st_size / 2**20
        ort_gen = OnnxGenerator(path, threads=args.threads)

        print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs visible), {platform.platform()}")
        print(
            f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"numpy {np.__version__}, ganime {ganime.__version__}; {args.threads} intra-op threads each"
        )
        print(
            f"model: tutorial DCGAN G, {model.resolution} px, z {model.z_dim}, g_width {model.g_width}, "
            f"{sum(p.numel() for p in G.parameters()) / 1e6:.2f} M params, ONNX file {onnx_mb:.1f} MiB, "
            f"opset 17, fp32, BatchNorm in eval mode"
        )
        print(f"{'batch':>5}  {'backend':<12} {'median ms':>10} {'min ms':>9} {'img/s':>9} {'calls':>6}")
        for batch in args.batches:
            z = np.random.default_rng(batch).standard_normal((batch, model.z_dim)).astype(np.float32)
            zt = torch.from_numpy(z)

            def run_torch(zt=zt):
                with torch.inference_mode():
                    return G(zt)

            def run_ort(z=z):
                return ort_gen.forward(z)

            diff = float(np.abs(run_ort() - run_torch().numpy()).max())
            medians = {}
            for name, fn in (("pytorch", run_torch), ("onnxruntime", run_ort)):
                times = time_calls(fn, args.seconds)
                med = statistics.median(times)
                medians[name] = med
                print(
                    f"{batch:>5}  {name:<12} {med * 1e3:>10.2f} {min(times) * 1e3:>9.2f} "
                    f"{batch / med:>9.1f} {len(times):>6}"
                )
            print(
                f"{batch:>5}  onnxruntime / pytorch median time: {medians['onnxruntime'] / medians['pytorch']:.2f}x; "
                f"max |onnxruntime - torch| = {diff:.1e}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
