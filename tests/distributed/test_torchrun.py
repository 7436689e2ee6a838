"""`torchrun -m ganime train` with 2 CPU processes (gloo on loopback) against the 1-process run: same weights
after 3 steps and after a torchrun resume to 6; a killed rank stops the job with one error line and an intact,
loadable, resumable checkpoint; with --max-restarts the restarted workers resume and end on the 1-process weights.

Where exactness is lost: nowhere by design for this config. The 2-process run sees the same global batch in the
same order (rank r takes the r-th half), draws the same latents (every rank draws the global batch's and keeps
its half), averages gradients over ranks (DDP) and, with --sync-bn, normalises with BatchNorm statistics of the
global batch. What differs is float32 summation order: a gradient is (mean of 4 + mean of 4) / 2 instead of a
mean of 8, and the synchronised BatchNorm sums its statistics in float64. That is ~1e-7 relative per step (we
measured 7e-9 absolute after 6 steps; without --sync-bn, i.e. BatchNorm per rank, 2e-3). A real desync (a rank on
the wrong shard or latents, an unsynced gradient, BatchNorm per rank) moves weights by about one Adam step,
~lr = 2e-4 per step, so `ATOL` = 1e-5 separates the two by 20x.
Not exact by design (and not tested here): DiffAugment and D dropout draws, which are per rank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_images
from ganime import checkpoint as ckpt_io
from ganime import runlock
from ganime.config import override
from ganime.generate import load_generator
from ganime.training.loop import train

ATOL = 1e-5  # see the module docstring
TIMEOUT_S = 240  # a hang fails the test instead of blocking the suite

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def _torchrun(*args: str, timeout: float = TIMEOUT_S, popen: bool = False, launcher: tuple[str, ...] = ()):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *launcher,
           "-m", "ganime", "train", "--no-progress", *args]
    # a silent peer would make gloo wait GANIME_DIST_TIMEOUT seconds: keep it well under the test's own timeout
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANIME_DIST_TIMEOUT": "60", "PYTHONWARNINGS": "ignore"}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    write_images(tmp / "imgs", 32, size=16)
    # the tutorial DCGAN: BatchNorm in G and D, so --sync-bn matters; batch 8 = 4 per rank
    cfg = tiny_config(tmp / "imgs", tmp / "cache", batch_size=8, grid_size=4, sync_bn=True)
    (tmp / "cfg.json").write_text(cfg.to_json())
    return tmp, cfg


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return ckpt_io.read_tensors(ckpt / ckpt_io.MODEL_FILE)


def _assert_same_weights(one: Path, two: Path) -> None:
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            diff = (a[k] - b[k]).abs().max().item()
            assert diff <= ATOL, f"{k} differs by {diff:.3g} between the 1- and 2-process runs"
        else:
            assert torch.equal(a[k], b[k]), k  # BatchNorm's num_batches_tracked


@pytest.fixture(scope="module")
def one_process(setup) -> Path:
    """The 1-process reference run, checkpoints at steps 3, 6 and (epoch ends, every 4 steps) 4, 8."""
    tmp, cfg = setup
    train(override(cfg, max_steps=8, ckpt_every=3, keep_ckpts=10), tmp / "one", progress=False)
    return tmp / "one"


def test_two_processes_train_like_one_and_resume(setup, one_process):
    tmp = setup[0]
    one, two = one_process, tmp / "two"

    r = _torchrun("--config", str(tmp / "cfg.json"), "--out", str(two), "--steps", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("finished: step 3") == 1  # rank 0 reports for the job, the other rank is silent
    assert r.stderr.count("training tutorial on 32 images") == 1
    state = ckpt_io.read_state(two / "ckpt-000000003")
    assert state["world_size"] == 2 and state["images_seen"] == 24  # 3 global batches of 8
    _assert_same_weights(one / "ckpt-000000003", two / "ckpt-000000003")

    # both ranks resume from the checkpoint rank 0 wrote and continue exactly as the 1-process run did
    r = _torchrun("--resume", str(two), "--steps", "6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed" in r.stderr and "finished: step 6" in r.stdout
    _assert_same_weights(one / "ckpt-000000006", two / "ckpt-000000006")
    assert not (two / runlock.LOCK_FILE).exists()  # rank 0 gave the lock back


def _workers(parent: int) -> dict[int, int]:
    """{RANK: pid} of the worker processes torchrun started."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (d / "environ").read_bytes().split(b"\0") if ppid == parent else []
        except (OSError, ValueError, IndexError):
            continue
        for var in environ:
            if var.startswith(b"RANK="):
                found[int(var[5:])] = int(d.name)
    return found


def _kill_rank_after_step(job: subprocess.Popen, run: Path, rank: int, step: int, before=None) -> None:
    """SIGKILL one worker once the job has checkpointed `step` (it checkpoints every step); `before({rank: pid})`
    runs first, while the job trains."""
    deadline = time.monotonic() + TIMEOUT_S
    while not (run / f"ckpt-{step:09d}").exists():
        assert job.poll() is None, job.communicate()[0]
        assert time.monotonic() < deadline, "the job did not start training"
        time.sleep(0.05)
    ranks = _workers(job.pid)
    assert sorted(ranks) == [0, 1]
    if before is not None:
        before(ranks)
    os.kill(ranks[rank], signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' pids in /proc")
def test_killed_rank_stops_job_with_clear_error_and_intact_checkpoint(setup, caplog):
    """Also: rank 0 alone holds the run's lock and a second job on the same --out refuses (every rank, at once);
    after the kill -9 a resume takes the dead job's lock over."""
    tmp, cfg = setup
    run = tmp / "killed"
    job = _torchrun("--config", str(tmp / "cfg.json"), "--out", str(run), "--steps", "100000", "--ckpt-every", "1",
                    popen=True)

    def second_job(ranks: dict[int, int]) -> None:
        assert runlock.read_owner(run)["pid"] == ranks[0]
        r = _torchrun("--config", str(tmp / "cfg.json"), "--out", str(run), "--steps", "100000")
        out = r.stdout + r.stderr
        assert r.returncode != 0
        assert f"error: {run} is in use by another training run (pid {ranks[0]} on host" in out, out
        assert "another process of this job failed" not in out  # no rank was left waiting for rank 0

    try:
        # the rank that writes, possibly in the middle of a checkpoint
        _kill_rank_after_step(job, run, 0, 2, before=second_job)
        out, _ = job.communicate(timeout=120)  # no hang: rank 1 notices and the job ends
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0
    assert "error: rank 1 of 2: another process of this job failed or was killed" in out, out
    assert "is intact" in out and "--resume" in out
    assert "Traceback" not in out.split("error: rank 1 of 2")[0]  # ganime's own message comes without one

    last = ckpt_io.latest_checkpoint(run)
    assert last is not None and ckpt_io.is_complete(last)
    step = ckpt_io.read_state(last)["step"]
    assert step >= 2
    assert f"the last checkpoint {last} is intact" in out or f"the last checkpoint {run / last.name} is intact" in out
    g = load_generator(run)  # loadable for sampling...
    imgs = g.images(g.latents([0, 1]))
    assert imgs.shape == (2, 16, 16, 3) and imgs.std() > 0
    res = train(override(cfg, max_steps=step + 1), run, resume=True, progress=False)  # ...and for training on
    assert res.step == step + 1
    assert "taking over the lock" in caplog.text and "no longer running" in caplog.text  # rank 0 was kill -9'd


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' pids in /proc")
def test_max_restarts_resumes_after_a_killed_rank_to_the_same_weights(setup, one_process):
    tmp = setup[0]
    run = tmp / "restarted"
    job = _torchrun("--config", str(tmp / "cfg.json"), "--out", str(run), "--steps", "8", "--ckpt-every", "1",
                    popen=True, launcher=("--max-restarts", "1"))
    try:
        _kill_rank_after_step(job, run, 1, 2)
        out, _ = job.communicate(timeout=TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 0, out
    # the first attempt stopped and the second resumed and ended (whether rank 0 of the first attempt says "another
    # process of this job failed" first is a race with torchrun's agent, which stops it as soon as it sees rank 1
    # die; test_killed_rank_stops_job_with_clear_error_and_intact_checkpoint checks that message)
    assert "torchrun restart 1: resuming" in out and "finished: step 8" in out
    # the interrupted job ends with the weights of the uninterrupted 1-process run
    _assert_same_weights(one_process / "ckpt-000000008", run / "ckpt-000000008")
