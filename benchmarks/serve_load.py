"""Load test of `ganime serve`: faces/s, p50/p99 latency and peak RSS, with and without micro-batching.

Starts `python -m ganime serve` on 127.0.0.1 (a free port) for each mode, sends a bounded number of
GET /api/face.png requests (unique seeds) from N concurrent keep-alive connections, then stops it. Each
connection comes from its own loopback address (127.0.0.2, 127.0.0.3, ...): N clients, as the server's
per-client limits see them (the rate limit is off: --rate-limit 0; the render cap per client is on).
Loopback only; every loop is bounded in requests and in time.

    python benchmarks/serve_load.py                       # 64 px DCGAN (z 128, ngf 64), untrained weights
    python benchmarks/serve_load.py --g-width 32          # the `modern` preset's G (ngf 32: 4x fewer FLOPs)
    python benchmarks/serve_load.py --generator runs/x     # a trained one (speed does not depend on weights)

It also times the generator alone in this process (batches of --max-batch, PNG encoding included, same
thread count): the ceiling that the server's faces/s can be compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def untrained_generator(out_dir: Path, resolution: int, g_width: int) -> Path:
    """A DCGAN generator with its initial weights: the same compute as a trained one of that size."""
    import torch

    from ganime.config import ModelConfig
    from ganime.generate import LoadedGenerator, save_generator
    from ganime.models import build_generator

    torch.manual_seed(0)
    model = ModelConfig(resolution=resolution, g_width=g_width)
    G = build_generator(model).eval()
    return save_generator(LoadedGenerator(G, model, "untrained-dcgan", torch.device("cpu"), {}), out_dir / "dcgan")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set size."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def running_server(cmd: list[str], port: int, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """`ganime serve` started from `cmd` on `port`, yielded once /api/info answers; stopped with SIGINT after."""
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        start = time.monotonic()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr.read().decode()[-2000:]}")
            if time.monotonic() - start > 120:
                raise RuntimeError("server did not start in 120 s")
            try:
                get_json(f"http://127.0.0.1:{port}/api/info")
                break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


async def fetch_many(port: int, seeds: list[int], concurrency: int, size: int | None, deadline: float) -> list[float]:
    """Latencies (s) of GET /api/face.png for `seeds`, over `concurrency` keep-alive connections."""
    latencies: list[float] = []
    todo = iter(seeds)
    extra = f"&size={size}" if size else ""

    async def client(k: int) -> None:
        # its own source address: one client per connection for the server's per-client limits
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + k}", 0))
        try:
            for seed in todo:
                if time.monotonic() > deadline:
                    raise TimeoutError("benchmark time limit reached")
                t0 = time.perf_counter()
                writer.write(f"GET /api/face.png?seed={seed}{extra} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status != b"200" or not body.startswith(b"\x89PNG"):
                    raise RuntimeError(f"seed {seed}: HTTP {status.decode()} {body[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return latencies


def run_mode(args: argparse.Namespace, generator: Path, max_batch: int, seed0: int, store: Path) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "ganime", "serve", str(generator), "--port", str(port), "--store", str(store)]
    cmd += ["--max-batch", str(max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
    cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
    cmd += ["--rate-limit", "0", "--access-log", "off"]  # one client sends all the load: no per-client limit
    with running_server(cmd, port) as server:
        deadline = time.monotonic() + args.time_limit
        asyncio.run(fetch_many(port, list(range(10**6, 10**6 + 64)), args.concurrency, args.size, deadline))  # warm-up
        before = get_json(f"http://127.0.0.1:{port}/api/info")["batching"]
        seeds = list(range(seed0, seed0 + args.requests))
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        lat = asyncio.run(fetch_many(port, seeds, args.concurrency, args.size, deadline))
        wall = time.perf_counter() - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
        after = get_json(f"http://127.0.0.1:{port}/api/info")["batching"]
        calls = after["calls"] - before["calls"]
        lat.sort()
        return {
            "mode": "micro-batching" if max_batch > 1 else "no batching",
            "max_batch": max_batch,
            "requests": len(lat),
            "faces_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "generator_calls": calls,
            "mean_batch": round((after["latents"] - before["latents"]) / max(calls, 1), 1),
            # CPU time the server spent per face: unlike faces/s, barely moved by other jobs on a shared machine
            "server_cpu_ms_per_face": round(1000 * server_cpu / len(lat), 2),
            "peak_rss_mib": round(peak_rss_mib(server.pid), 1),
        }


def generator_ceiling(generator: Path, batch: int, threads: int, workers: int, seconds: float = 10) -> dict:
    """Faces/s of the generator alone (latents -> PNG bytes), in batches of `batch`, in this process."""
    import torch

    from ganime.cli.serve import default_threads
    from ganime.device import physical_cores, set_threads
    from ganime.generate import load_generator
    from ganime.web.encode import encode_png

    set_threads(threads or default_threads(physical_cores(), workers))
    gen = load_generator(generator)
    seeds = iter(range(2 * 10**6, 3 * 10**6))
    z = gen.latents([next(seeds) for _ in range(batch)])
    [encode_png(im) for im in gen.images(z)]  # warm-up
    faces, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        z = gen.latents([next(seeds) for _ in range(batch)])
        [encode_png(im) for im in gen.images(z)]
        faces += batch
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "batch": batch,
        "faces_per_s": round(faces / wall, 1),
        "cpu_ms_per_face": round(1000 * cpu / faces, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", type=Path, help="run dir / ckpt dir / .safetensors (default: untrained DCGAN)")
    p.add_argument("--resolution", type=int, default=64, help="of the untrained DCGAN")
    p.add_argument("--g-width", type=int, default=64, help="ngf of the untrained DCGAN (64 tutorial, 32 modern)")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="size= query (default: the model's resolution)")
    p.add_argument("--max-batch", type=int, default=32, help="for the micro-batching run")
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads per generator call (0 = serve's default)")
    p.add_argument("--modes", default="batched,unbatched")
    p.add_argument("--time-limit", type=float, default=300, help="seconds per mode, then stop")
    args = p.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 250:
        p.error("--requests must be 1..100000 and --concurrency 1..250")

    import torch

    from ganime.cli.serve import default_threads
    from ganime.device import cpu_model, physical_cores

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        generator = args.generator or untrained_generator(Path(tmp), args.resolution, args.g_width)
        for i, mode in enumerate(m.strip() for m in args.modes.split(",")):
            max_batch = {"batched": args.max_batch, "unbatched": 1}[mode]
            results.append(run_mode(args, generator, max_batch, 10_000 * (i + 1), Path(tmp) / "gallery.sqlite"))
        ceiling = generator_ceiling(generator, args.max_batch, args.threads, args.workers)
    env = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1m_after": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "generator": str(args.generator)
        if args.generator
        else f"untrained DCGAN {args.resolution} px (z 128, ngf {args.g_width})",
        "concurrency": args.concurrency,
        "workers": args.workers,
        "threads_per_worker": args.threads or default_threads(physical_cores(), args.workers),
        "batch_wait_ms": args.batch_wait_ms,
        # uvicorn's "auto" picks uvloop and httptools when installed (uvicorn[standard]), asyncio and h11 otherwise
        "uvicorn": "uvloop+httptools" if has_module("uvloop") and has_module("httptools") else "asyncio+h11",
    }
    print(json.dumps(env))
    cols = ["mode", "max_batch", "requests", "faces_per_s", "p50_ms", "p99_ms", "generator_calls", "mean_batch"]
    cols += ["server_cpu_ms_per_face", "peak_rss_mib"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    print(
        f"generator alone (in-process, batches of {ceiling['batch']}, PNG encoding included): "
        f"{ceiling['faces_per_s']} faces/s with {ceiling['threads']} thread(s), {ceiling['cpu_ms_per_face']} CPU ms/face"
    )
    print(json.dumps({"serve": results, "generator_alone": ceiling}))


if __name__ == "__main__":
    main()
