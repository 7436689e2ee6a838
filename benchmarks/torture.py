"""Crash/resume torture: SIGKILL a training subprocess at random moments (many during checkpoint writes),
resume it each time, and compare the final weights with an uninterrupted run: they must be bit-identical.

After every kill it checks the run dir the way a user's next command would see it: every ckpt-* dir is
complete and loadable, latest.json names a complete checkpoint, and resume picks a complete one (taking over
the killed trainer's lock). Then a second writer: two trainers on one run dir (`second_writer`).

    python benchmarks/torture.py --kills 20            # the benchmark (docs/reliability.md), then a second writer
    python benchmarks/torture.py --child RUN DATA ...  # (internal) one training session

Also used by tests/reliability/test_torture.py with a few kills.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD_STEPS, CHILD_BATCH = 24, 4


def tiny_config(data: Path, cache: Path, steps: int):
    """A 16 px, width-8 DCGAN with a checkpoint every step: most wall time is spent writing checkpoints."""
    from ganime.config import override, preset

    return override(
        preset("keras-readme"),  # D dropout: the RNG state must survive the kills too
        **{
            "model.resolution": 16, "model.g_width": 8, "model.d_width": 8, "model.z_dim": 16,
            "batch_size": CHILD_BATCH, "data.path": str(data), "data.cache_dir": str(cache), "threads": 1,
            "max_steps": steps, "ckpt_every": 1, "keep_ckpts": 2, "epochs": 0,
        },
    )


def child(run: Path, data: Path, cache: Path, steps: int, pause_at: int = 0) -> None:
    """One training session: resume if the run has a checkpoint. Announces each checkpoint file write; at the
    `pause_at`-th one it says PAUSED and waits for a line on stdin (a second writer is tried meanwhile)."""
    import ganime
    from ganime import checkpoint as ckpt_io

    original = ckpt_io.save_tensors
    writes = 0

    def announced(path, tensors, metadata=None):
        nonlocal writes
        writes += 1
        print(f"WRITE {path.name}", flush=True)  # the parent may kill us right now, mid-write
        if writes == pause_at:
            print("PAUSED", flush=True)
            sys.stdin.readline()
        return original(path, tensors, metadata)

    ckpt_io.save_tensors = announced
    try:
        latest = ckpt_io.latest_checkpoint(run)
        print(f"START {ckpt_io.read_state(latest)['step'] if latest else 0}", flush=True)  # the step it resumes at
        result = ganime.train(tiny_config(data, cache, steps), run, resume=latest is not None, progress=False)
    finally:
        ckpt_io.save_tensors = original  # (the test suite calls this in its own process)
    print(f"DONE {result.step} {result.stopped}", flush=True)


def make_data(folder: Path, n: int = 10, seed: int = 0) -> Path:
    """n random 20 px PNGs (10 at batch 4: epochs end mid-batch-grid, so resume crosses epoch boundaries)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"r{i:02d}.png")
    return folder


def check_run_dir(run: Path) -> list[str]:
    """Problems a user would hit after a crash: any incomplete ckpt-* dir, a bad latest.json, unloadable files."""
    from ganime import checkpoint as ckpt_io

    problems = []
    for ckpt in ckpt_io.list_checkpoints(run):
        if not ckpt_io.is_complete(ckpt):
            problems.append(f"{ckpt.name} is incomplete")
            continue
        try:
            ckpt_io.read_state(ckpt)
            ckpt_io.read_tensors(ckpt / ckpt_io.MODEL_FILE)
            ckpt_io.read_tensors(ckpt / ckpt_io.TRAIN_FILE)
        except Exception as e:  # noqa: BLE001 - report, do not stop the torture
            problems.append(f"{ckpt.name}: {e}")
    latest = run / ckpt_io.LATEST_FILE
    if latest.exists():
        try:
            name = json.loads(latest.read_text())["checkpoint"]
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"latest.json unreadable: {e}")
        else:
            if not ckpt_io.is_complete(run / name):
                problems.append(f"latest.json names {name}, which is not a complete checkpoint")
    if ckpt_io.list_checkpoints(run):
        picked = ckpt_io.resolve_checkpoint(run)
        if not ckpt_io.is_complete(picked):
            problems.append(f"resume would pick the incomplete {picked.name}")
    return problems


def second_writer(work: Path, steps: int = CHILD_STEPS, straight: Path | None = None) -> dict:
    """Two trainers on one run dir: while the first is paused in the middle of a checkpoint write, `ganime train`
    and `ganime train --resume` on the same --out must each refuse with one line naming it, and a reader must get
    the last complete checkpoint without waiting; the first then finishes with a lone run's weights."""
    from ganime.generate import load_generator

    t0 = time.perf_counter()
    data, cache = make_data(work / "data"), work / "cache"
    if straight is None or not (straight / f"ckpt-{steps:09d}").is_dir():
        straight = work / "straight"
        child(straight, data, cache, steps)
    load_generator(straight)  # imports torch and the model code now, so the timed read below is the read alone
    run, cfg_file = work / "shared", work / "second-writer.json"
    shutil.rmtree(run, ignore_errors=True)
    cfg_file.write_text(tiny_config(data, cache, steps).to_json())
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(run), str(data), str(cache), str(steps), "8"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    out = []
    for line in first.stdout:  # 8th file write: the 4th checkpoint, two files per checkpoint
        out.append(line)
        if line.startswith("PAUSED"):
            break
    second = {}
    try:
        for name, args in (("train", ["--config", str(cfg_file), "--out", str(run), "--steps", str(steps)]),
                           ("resume", ["--resume", str(run), "--steps", str(steps)])):
            r = subprocess.run([sys.executable, "-m", "ganime", "train", "--no-progress", *args], check=False,
                               env=env, capture_output=True, text=True, timeout=300)
            second[name] = {"code": r.returncode, "stderr": r.stderr, "stdout": r.stdout}
        t_read = time.perf_counter()
        g = load_generator(run)  # a reader while the writer is mid-checkpoint: the last complete one, no wait
        read = {"checkpoint": Path(g.source).name, "seconds": time.perf_counter() - t_read,
                "problems": check_run_dir(run)}
    finally:
        if first.poll() is None and first.stdin:
            first.stdin.write("\n")
            first.stdin.flush()
        rest, _ = first.communicate(timeout=300)
    out.append(rest)
    differing = _differing(straight / f"ckpt-{steps:09d}", run / f"ckpt-{steps:09d}")
    return {"first_pid": first.pid, "first_code": first.returncode, "first_output": "".join(out), "second": second,
            "read": read, "differing": differing, "identical": not differing, "seconds": time.perf_counter() - t0}


@dataclass
class Report:
    """What one torture run did and found."""

    kills: int = 0
    kills_during_write: int = 0
    successes: int = 0  # kills after which the run dir was clean and the next session resumed and went on
    sessions: int = 0
    finished_before_kill: int = 0
    problems: list[str] = field(default_factory=list)
    identical: bool = False
    differing: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _session(
    cmd: list[str], kill_plan: tuple[str, float] | None, env: dict, at_write: int | None = None
) -> tuple[bool, bool, str]:
    """Run one child; kill it per plan ("write", delay), ("time", delay) or ("term", _): SIGTERM at a write,
    then let it exit on its own. "write"/"term" act at the `at_write`-th file write (default: random 2-12).
    Returns (killed, during_write, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out: list[str] = []
    started_at = None
    writes_seen = 0
    target_write = at_write or random.randint(2, 12) if kill_plan and kill_plan[0] in ("write", "term") else None
    killed = during_write = False
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        timeout = 0.05
        if kill_plan and kill_plan[0] == "time" and started_at is not None:
            remaining = started_at + kill_plan[1] - time.monotonic()
            if remaining <= 0:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            timeout = min(timeout, remaining)
        for _key, _ in sel.select(timeout):
            line = proc.stdout.readline()
            if not line:
                continue
            out.append(line)
            if line.startswith("START"):
                started_at = time.monotonic()
            if line.startswith("WRITE"):
                writes_seen += 1
                if kill_plan and kill_plan[0] == "term" and writes_seen == target_write:
                    proc.send_signal(signal.SIGTERM)  # ask for a clean stop; keep reading until it exits
                elif kill_plan and kill_plan[0] == "write" and writes_seen >= target_write:
                    time.sleep(kill_plan[1])  # 0-3 ms: inside the write or its fsync
                    proc.send_signal(signal.SIGKILL)
                    killed = during_write = True
                    break
        if killed:
            break
    if proc.poll() is None and not killed:
        proc.kill()
    rest = proc.communicate()[0] or ""
    return killed, during_write, "".join(out) + rest


def torture(work: Path, kills: int, steps: int = CHILD_STEPS, seed: int = 0, straight_in_process: bool = False) -> Report:
    """Kill/resume a run `kills` times, finish it, and compare with an uninterrupted run of `steps` steps."""
    random.seed(seed)
    t0 = time.perf_counter()
    data, cache = make_data(work / "data"), work / "cache"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    straight, tortured = work / "straight", work / "tortured"
    if straight_in_process:
        child(straight, data, cache, steps)
    else:
        subprocess.run([*me, str(straight), str(data), str(cache), str(steps)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    rep = Report()
    cmd = [*me, str(tortured), str(data), str(cache), str(steps)]
    clean_after_kill = False  # the last kill left a clean run dir; it is a success once a session resumes from it

    def resumed(out: str) -> bool:
        return any(line.startswith("START") for line in out.splitlines()) and "Traceback" not in out

    while rep.kills < kills:
        plan = ("write", random.uniform(0, 0.003)) if rep.kills % 2 == 0 else ("time", random.uniform(0.05, 1.5))
        killed, during_write, out = _session(cmd, plan, env)
        rep.sessions += 1
        rep.successes += clean_after_kill and resumed(out)
        clean_after_kill = False
        if not killed:
            if "DONE" in out:  # finished before the planned kill: start the next round from scratch
                rep.finished_before_kill += 1
                shutil.rmtree(tortured)
                continue
            rep.problems.append(f"session {rep.sessions} failed: {out[-2000:]}")
            break
        rep.kills += 1
        rep.kills_during_write += during_write
        found = check_run_dir(tortured)
        rep.problems += [f"after kill {rep.kills}: {p}" for p in found]
        clean_after_kill = not found
    if not any(p.startswith("session") for p in rep.problems):
        killed, _, out = _session(cmd, None, env)
        rep.sessions += 1
        rep.successes += clean_after_kill and resumed(out)
        if "DONE" not in out:
            rep.problems.append(f"the final session failed: {out[-2000:]}")
    rep.seconds = time.perf_counter() - t0
    if not (tortured / f"ckpt-{steps:09d}").is_dir():
        return rep
    rep.differing = _differing(straight / f"ckpt-{steps:09d}", tortured / f"ckpt-{steps:09d}")
    rep.identical = not rep.differing
    return rep


def _differing(a_ckpt: Path, b_ckpt: Path) -> list[str]:
    """Tensors (weights, BN stats, Adam moments, RNG states) that differ between two checkpoints, bit for bit."""
    import torch
    from safetensors.torch import load_file

    if not b_ckpt.is_dir():
        return [f"{b_ckpt.name} missing"]
    out = []
    for fname in ("model.safetensors", "train.safetensors"):
        a, b = load_file(str(a_ckpt / fname)), load_file(str(b_ckpt / fname))
        out += [f"{fname}:{k}" for k in sorted(set(a) | set(b)) if k not in a or k not in b or not torch.equal(a[k], b[k])]
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run, data, cache, steps = sys.argv[2:6]
        child(Path(run), Path(data), Path(cache), int(steps), int(sys.argv[6]) if len(sys.argv) > 6 else 0)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--steps", type=int, default=CHILD_STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    from ganime.device import cpu_model

    print(f"cpu: {cpu_model()}; python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        rep = torture(Path(tmp), args.kills, args.steps, args.seed)
        sw = second_writer(Path(tmp), args.steps, Path(tmp) / "straight")
    refused = [k for k, r in sw["second"].items() if r["code"] == 2 and "is in use by another training run" in r["stderr"]]
    sw_ok = len(refused) == 2 and sw["identical"] and not sw["read"]["problems"] and sw["first_code"] == 0
    print(
        f"second writer: {len(refused)}/2 refused (train, train --resume) while the first was mid-checkpoint; "
        f"a reader got {sw['read']['checkpoint']} in {sw['read']['seconds']:.2f} s; the first run's final weights "
        f"bit-identical to a lone run: {sw['identical']}"
    )
    print(
        f"successes: {rep.successes}/{rep.kills} kills recovered (run dir clean, resumed); "
        f"kills: {rep.kills} ({rep.kills_during_write} during checkpoint writes), sessions: {rep.sessions}, "
        f"problems seen after kills: {len(rep.problems)}, final weights bit-identical: {rep.identical}, "
        f"{rep.seconds:.0f} s"
    )
    for p in rep.problems + rep.differing:
        print("  ", p)
    if args.json:
        args.json.write_text(json.dumps({**rep.__dict__, "second_writer": sw}, indent=1))
    sys.exit(0 if rep.identical and not rep.problems and sw_ok else 1)


if __name__ == "__main__":
    main()
