"""One run, one writer (runlock.py): a second `ganime train` or `train --resume` on a run that is training refuses
with one line naming the owner; readers never wait and only see complete checkpoints; the first run ends as a
lone run would, bit for bit, and stays resumable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import ganime
from ganime import checkpoint as ckpt_io
from ganime.errors import CheckpointError
from ganime.runlock import LOCK_FILE
from reliability.test_torture import load_torture


def test_a_second_writer_refuses_and_the_first_run_is_intact(tmp_path):
    T = load_torture()
    steps = 6
    sw = T.second_writer(tmp_path, steps)  # the first trainer pauses inside its 4th checkpoint write
    first = sw["first_pid"]
    for name in ("train", "resume"):
        r = sw["second"][name]
        lines = r["stderr"].strip().splitlines()
        assert r["code"] == 2 and len(lines) == 1, (name, r)
        assert lines[0].startswith(f"error: {tmp_path / 'shared'} is in use by another training run (pid {first} on host")
        assert "torture.py --child" in lines[0] and "started 20" in lines[0]  # its command and start time
        assert "Traceback" not in r["stderr"] and "finished" not in r["stdout"]
    # a reader meanwhile: no wait, the newest complete checkpoint, nothing broken. Saves come at steps 1, 2, 2
    # (epoch end: 2 steps per epoch), 3: the paused 4th is step 3's, half-written, so the reader gets step 2's
    assert sw["read"]["checkpoint"] == "ckpt-000000002" and sw["read"]["problems"] == []
    assert sw["first_code"] == 0 and f"DONE {steps} done" in sw["first_output"], sw["first_output"]
    assert sw["identical"], sw["differing"]  # as if it had been alone
    run = tmp_path / "shared"
    steps_logged = [int(r["step"]) for r in csv.DictReader((run / "metrics.csv").read_text().splitlines())]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps  # one run's rows, no repeats
    assert not (run / LOCK_FILE).exists()  # released at the end
    cfg = T.tiny_config(tmp_path / "data", tmp_path / "cache", steps + 2)
    assert ganime.train(cfg, run, resume=True, progress=False).step == steps + 2  # and resumable


def test_readers_do_not_wait_for_a_held_lock(tmp_path):
    """generate/eval/serve/export read checkpoints, never the lock: a run that is locked loads at once."""
    from conftest import tiny_config, write_images
    from ganime.runlock import RunLock

    write_images(tmp_path / "imgs", 8)
    ganime.train(tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=2), tmp_path / "run", progress=False)
    with RunLock(tmp_path / "run"):
        g = ganime.load_generator(tmp_path / "run")
        assert g.meta["step"] == 2 and ckpt_io.resolve_checkpoint(tmp_path / "run").name == "ckpt-000000002"


def test_a_checkpoint_pruned_while_it_is_read_gives_the_newest_not_an_error(tmp_path, monkeypatch):
    """A reader resolves a training run's latest checkpoint; before it opens the weights the trainer saves a newer
    one and prunes the old (--keep 1). The reader then loads the newest instead of failing."""
    import shutil

    from conftest import tiny_config, write_images
    from ganime import generate

    write_images(tmp_path / "imgs", 8)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=4, ckpt_every=2, keep_ckpts=1)
    run = tmp_path / "run"
    ganime.train(cfg, run, progress=False)
    real_read_state = generate.read_state

    def read_state_then_trainer_moves_on(ckpt):
        state = real_read_state(ckpt)
        if ckpt.name == "ckpt-000000004" and not (run / "ckpt-000000006").exists():
            shutil.copytree(ckpt, run / ".tmp-ckpt-000000006-1")  # what a save of step 6 then does:
            (run / ".tmp-ckpt-000000006-1").rename(run / "ckpt-000000006")
            ckpt_io.atomic_write_json(run / ckpt_io.LATEST_FILE, {"checkpoint": "ckpt-000000006", "step": 6})
            ckpt_io.prune(run, 1)
            assert not ckpt.exists()
        return state

    monkeypatch.setattr(generate, "read_state", read_state_then_trainer_moves_on)
    g = ganime.load_generator(run)
    assert Path(g.source).name == "ckpt-000000006"
    with pytest.raises(CheckpointError, match="does not exist"):  # a checkpoint asked for by name: no substitute
        ganime.load_generator(run / "ckpt-000000004")
