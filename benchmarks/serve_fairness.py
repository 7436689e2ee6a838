"""Fairness of `ganime serve`: another client's single faces while one client saturates it with latent walks.

Starts `python -m ganime serve` on 127.0.0.1 (a free port) and, for each mode, runs for --seconds:
  - the victim (client address 127.0.0.2): one GET /api/face.png?seed=N (unique seeds, the model's size)
    every 1/--face-rate s, on one keep-alive connection; its latencies are the result;
  - the attacker (127.0.0.3), except in the baseline: --walkers keep-alive connections, each sending
    GET /api/interpolate.gif?frames=120&size=128 (unique seeds: no cache helps) back to back; a 429 makes
    that connection sleep its Retry-After (at most 2 s), as a client saturating its budget does.
Modes: `baseline` (no attacker), `attack` (the default rate limit: the attacker is held to its budget) and
`attack-nolimit` (--rate-limit 0: nothing stops it; the generator's bulk lane stays busy all the time, as
with many attacking addresses). Loopback only; every loop is bounded in time.

    python benchmarks/serve_fairness.py                          # the shipped 128 px generator
    python benchmarks/serve_fairness.py --generator untrained    # an untrained 64 px DCGAN (ngf 32)
    python benchmarks/serve_fairness.py --pythonpath /old/src    # the same against another checkout's code
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from serve_load import free_port, get_json, running_server, untrained_generator

VICTIM, ATTACKER = "127.0.0.2", "127.0.0.3"


async def _request(reader, writer, target: str) -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def victim(port: int, seconds: float, rate: float, seed0: int) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(VICTIM, 0))
    latencies, statuses = [], {}
    start = time.monotonic()
    try:
        k = 0
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            status, _, _ = await _request(reader, writer, f"/api/face.png?seed={seed0 + k}")
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            k += 1
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
    finally:
        writer.close()
    latencies.sort()
    return {
        "faces": len(latencies),
        "statuses": statuses,
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
    }


async def attacker(port: int, seconds: float, walkers: int, frames: int, size: int, stop: asyncio.Event) -> dict:
    done = {"walks": 0, "refused_429": 0, "other": 0}

    async def walker(w: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
        try:
            k = 0
            while not stop.is_set():
                a = 10**6 + 1000 * w + k
                status, headers, _ = await _request(
                    reader, writer, f"/api/interpolate.gif?a={a}&b={a + 1}&frames={frames}&size={size}"
                )
                k += 1
                if status == 200:
                    done["walks"] += 1
                elif status == 429:
                    done["refused_429"] += 1
                    await asyncio.sleep(min(2.0, float(headers.get("retry-after", "1"))))
                else:
                    done["other"] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            done["other"] += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(walker(w)) for w in range(walkers)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    return done


async def scenario(port: int, args: argparse.Namespace, attack: bool, seed0: int) -> dict:
    stop = asyncio.Event()
    attack_task = None
    if attack:
        attack_task = asyncio.create_task(attacker(port, args.seconds + 2, args.walkers, 120, 128, stop))
        await asyncio.sleep(2)  # the attacker's walks fill the queue first
    result = {"victim": await victim(port, args.seconds, args.face_rate, seed0)}
    if attack_task is not None:
        result["attacker"] = await attack_task
    return result


def run_mode(args: argparse.Namespace, generator: Path | None, store: Path, mode: str, seed0: int) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "ganime", "serve", *([str(generator)] if generator else [])]
    cmd += ["--port", str(port), "--store", str(store)]
    cmd += ["--access-log", "off", "--threads", str(args.threads)]
    if mode == "attack-nolimit":
        cmd += ["--rate-limit", "0"]
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with running_server(cmd, port, env):
        for s in range(20):  # warm-up: first calls of each shape
            get_json(f"http://127.0.0.1:{port}/api/info")
        asyncio.run(victim(port, 1.0, 10, 5 * 10**6 + seed0))
        result = asyncio.run(scenario(port, args, mode != "baseline", seed0))
        return {"mode": mode, **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", help="run dir / ckpt dir / .safetensors, or 'untrained' (default: the shipped one)")
    p.add_argument("--g-width", type=int, default=32, help="ngf of the untrained 64 px DCGAN (32: the shipped size)")
    p.add_argument("--seconds", type=float, default=30.0, help="victim's measuring time per mode")
    p.add_argument("--face-rate", type=float, default=5.0, help="victim's faces per second")
    p.add_argument("--walkers", type=int, default=6, help="attacker's connections")
    p.add_argument("--threads", type=int, default=0, help="--threads of ganime serve (0: its default)")
    p.add_argument("--modes", default="baseline,attack,attack-nolimit")
    p.add_argument("--pythonpath", help="PYTHONPATH for the server (e.g. another checkout's src)")
    args = p.parse_args()
    if not 1 <= args.seconds <= 600 or not 0.1 <= args.face_rate <= 50 or not 1 <= args.walkers <= 64:
        p.error("--seconds 1..600, --face-rate 0.1..50, --walkers 1..64")

    from ganime.device import cpu_model

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        generator = Path(args.generator) if args.generator not in (None, "untrained") else None
        if args.generator == "untrained":
            generator = untrained_generator(Path(tmp), 64, args.g_width)
        for i, mode in enumerate(m.strip() for m in args.modes.split(",")):
            results.append(run_mode(args, generator, Path(tmp) / "gallery.sqlite", mode, 10_000 * (i + 1)))
    env = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1m_after": os.getloadavg()[0],
        "generator": {None: "shipped (modern-faces-128)", "untrained": f"untrained DCGAN 64 px (ngf {args.g_width})"}.get(
            args.generator, args.generator
        ),
        "server_code": args.pythonpath or "this checkout",
        "walk": "120 frames, 128 px GIF",
        "walkers": args.walkers,
        "face_rate": args.face_rate,
        "seconds": args.seconds,
    }
    print(json.dumps(env))
    print("mode | victim faces | p50 ms | p99 ms | max ms | victim statuses | attacker walks | attacker 429s")
    for r in results:
        v, a = r["victim"], r.get("attacker", {})
        print(
            f"{r['mode']} | {v['faces']} | {v['p50_ms']} | {v['p99_ms']} | {v['max_ms']} | {v['statuses']} | "
            f"{a.get('walks', '-')} | {a.get('refused_429', '-')}"
        )
    print(json.dumps({"env": env, "results": results}))


if __name__ == "__main__":
    main()
