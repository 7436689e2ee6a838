"""Crash/resume torture, short version (benchmarks/torture.py runs 20 kills): SIGKILL mid-checkpoint-write,
SIGTERM, resume (taking over the killed trainer's run lock); the final weights equal an uninterrupted run's bit for
bit and no broken checkpoint is ever seen."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganime import checkpoint as ckpt_io
from ganime.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]


def load_torture():
    spec = importlib.util.spec_from_file_location("ganime_torture", ROOT / "benchmarks" / "torture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_sigkill_and_sigterm_then_resume_equals_an_unbroken_run(tmp_path):
    T = load_torture()
    random.seed(1)
    steps = 8
    data, cache = T.make_data(tmp_path / "data"), tmp_path / "cache"
    T.child(tmp_path / "straight", data, cache, steps)  # the reference, uninterrupted, in this process
    run = tmp_path / "tortured"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "torture.py"), "--child", str(run), str(data), str(cache),
           str(steps)]
    killed, during_write, out = T._session(cmd, ("write", 0.001), dict(os.environ), at_write=5)
    assert killed and during_write, out
    assert T.check_run_dir(run) == []  # a kill mid-write leaves only complete checkpoints
    resumed_at = ckpt_io.read_state(ckpt_io.resolve_checkpoint(run))["step"]
    killed, during_write, out = T._session(cmd, ("write", 0.0), dict(os.environ), at_write=4)
    assert killed and during_write and f"START {resumed_at}" in out, out
    assert f"taking over the lock of {run}: its owner (pid " in out and "no longer running" in out, out  # kill -9'd
    assert T.check_run_dir(run) == []
    killed, _, out = T._session(cmd, ("term", 0.0), dict(os.environ), at_write=2)
    assert not killed and "SIGTERM received: saving a checkpoint" in out, out
    done = [line for line in out.splitlines() if line.startswith("DONE")]
    assert done and done[0].endswith("signal") and int(done[0].split()[1]) < steps
    assert T.check_run_dir(run) == []
    killed, _, out = T._session(cmd, None, dict(os.environ))
    assert f"DONE {steps} done" in out, out
    name = f"ckpt-{steps:09d}"
    for fname in ("model.safetensors", "train.safetensors"):  # weights, BN stats, Adam moments, RNG states
        a, b = load_file(str(tmp_path / "straight" / name / fname)), load_file(str(run / name / fname))
        assert a.keys() == b.keys()
        assert [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    import ganime
    from conftest import tiny_config, write_images

    d = tmp_path_factory.mktemp("two_ckpts")
    write_images(d / "imgs", 8)
    cfg = tiny_config(d / "imgs", d / "cache", batch_size=4, max_steps=4, ckpt_every=2)
    ganime.train(cfg, d / "run", progress=False)
    return d / "run"


@pytest.fixture
def _two_checkpoints(trained_run, tmp_path):
    """A copy of a 4-step run with checkpoints at steps 2 and 4, for each test to damage."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run, run / "ckpt-000000002", run / "ckpt-000000004"


@pytest.mark.parametrize("damage", ["truncate_model", "delete_train", "garbage_state", "latest_names_missing"])
def test_a_damaged_latest_checkpoint_is_never_picked(_two_checkpoints, damage, caplog):
    run, older, newest = _two_checkpoints
    if damage == "truncate_model":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) - 100])
    elif damage == "delete_train":
        (newest / "train.safetensors").unlink()
    elif damage == "garbage_state":
        (newest / "state.json").write_text("{not json")
    else:
        shutil.rmtree(newest)
    assert ckpt_io.resolve_checkpoint(run) == older
    assert any("missing or incomplete; using ckpt-000000002" in r.message for r in caplog.records)


def test_temp_and_half_deleted_dirs_are_never_listed(_two_checkpoints):
    run, older, newest = _two_checkpoints
    shutil.copytree(newest, run / ".tmp-ckpt-000000006-123")  # as a kill mid-save leaves it
    (run / ".tmp-ckpt-000000006-123" / "state.json").unlink()
    assert ckpt_io.resolve_checkpoint(run) == newest
    assert [p.name for p in ckpt_io.list_checkpoints(run)] == [older.name, newest.name]
    assert json.loads((run / "latest.json").read_text())["checkpoint"] == newest.name


def test_a_pointer_outside_the_run_is_ignored(_two_checkpoints):
    run, _, newest = _two_checkpoints
    (run / "latest.json").write_text(json.dumps({"checkpoint": "../../elsewhere"}))
    assert ckpt_io.resolve_checkpoint(run) == newest
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt_io.resolve_checkpoint(run / "model.pt")


@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_saves_and_exits_after_the_current_step(tmp_path, monkeypatch, capsys, signals):
    """SIGINT (Ctrl-C) mid-run: the step in progress finishes, a checkpoint is written, the CLI says so and
    exits 0 — a bounded stop, whatever the budget. A second Ctrl-C aborts at once (exit 130) and the last
    complete checkpoint is still there."""
    import signal

    from conftest import tiny_config, write_images
    from ganime.cli import main
    from ganime.training.trainer import Trainer

    write_images(tmp_path / "imgs", 8)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", batch_size=4, ckpt_every=2)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    real_step = Trainer.train_step
    sent = {"at": None}

    def step(self, real, labels):
        out = real_step(self, real, labels)
        if self.step + 1 == 3 and sent["at"] is None:  # during step 3 of a 10^6-step budget
            sent["at"] = 3
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # signals do not queue: let the handler run before the next one
        return out

    monkeypatch.setattr(Trainer, "train_step", step)
    before = signal.getsignal(signal.SIGINT)
    code = main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "run"),
                 "--steps", "1000000", "--no-progress"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())
    if signals == 1:
        assert code == 0 and "stopped by signal: step 3" in out.out
        assert latest["step"] == 3 and ckpt_io.is_complete(tmp_path / "run" / latest["checkpoint"])
    else:
        assert code == 130 and "interrupted" in out.err, (out, latest)
        assert latest["step"] == 2 and ckpt_io.is_complete(tmp_path / "run" / latest["checkpoint"])
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back
