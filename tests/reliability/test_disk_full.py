"""Disk full: a failed checkpoint write is a clear error (or a warning, by option); the previous checkpoint stays
complete and loadable and nothing half-written is left. Simulated by failing writes, and for real on a tmpfs."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from safetensors import SafetensorError

import ganime
from conftest import tiny_config, write_images
from ganime import checkpoint as ckpt_io
from ganime.config import override
from ganime.errors import CheckpointError
from ganime.generate import load_generator

ENOSPC = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def full_disk_after(monkeypatch, ok_writes: int):
    """safetensors writes fail with ENOSPC after `ok_writes` files, leaving a partial file like a real full disk."""
    real = ckpt_io.save_file
    count = {"n": 0}

    def save_file(tensors, path, metadata=None):
        count["n"] += 1
        if count["n"] > ok_writes:
            Path(path).write_bytes(b"\0" * 100)  # what got written before the disk filled up
            raise ENOSPC  # as safetensors reports it (not an OSError)
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt_io, "save_file", save_file)


def assert_only_complete(run: Path) -> None:
    names = sorted(p.name for p in run.iterdir() if "ckpt" in p.name)
    assert all(n.startswith("ckpt-") for n in names), names  # no .tmp-* / .del-* leftovers
    for ckpt in ckpt_io.list_checkpoints(run):
        assert ckpt_io.is_complete(ckpt)
    assert ckpt_io.is_complete(ckpt_io.resolve_checkpoint(run))


@pytest.fixture
def cfg(tmp_path):
    write_images(tmp_path / "imgs", 16)  # 4 steps per epoch at batch 4
    return tiny_config(tmp_path / "imgs", tmp_path / "cache", batch_size=4, max_steps=6, ckpt_every=2)


def test_stop_policy_fails_clearly_and_keeps_the_previous_checkpoint(tmp_path, cfg, monkeypatch):
    full_disk_after(monkeypatch, ok_writes=2)  # ckpt at step 2 (model + train) fits, step 4 does not
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint is intact"):
        ganime.train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert_only_complete(run)
    assert json.loads((run / "latest.json").read_text())["step"] == 2
    assert load_generator(run).from_seeds([0]).shape == (1, 16, 16, 3)
    monkeypatch.undo()  # space freed: the run resumes from the intact checkpoint
    result = ganime.train(cfg, run, resume=True, progress=False)
    assert result.step == 6


def test_continue_policy_trains_on_and_saves_again_when_space_returns(tmp_path, cfg, monkeypatch, caplog):
    real = ckpt_io.save_file
    calls = {"n": 0}

    def flaky(tensors, path, metadata=None):  # only the step-4 checkpoint hits a full disk
        calls["n"] += 1
        if calls["n"] == 3:
            raise ENOSPC
        if calls["n"] == 4:  # (an OSError from the fsync after it is handled the same way)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt_io, "save_file", flaky)
    result = ganime.train(override(cfg, on_save_error="continue"), tmp_path / "run", progress=False)
    assert result.step == 6 and result.checkpoint.name == "ckpt-000000006"
    assert any("training continues" in r.message for r in caplog.records)
    assert_only_complete(tmp_path / "run")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")
def test_a_real_full_tmpfs(tmp_path, cfg):
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]
    if subprocess.run(mount, capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = mnt / "run"
        ganime.train(override(cfg, max_steps=2), run, progress=False)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to the last byte
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(CheckpointError, match="No space left on device"):
            ganime.train(override(cfg, max_steps=4), run, resume=True, progress=False)
        assert_only_complete(run)
        assert json.loads((run / "latest.json").read_text())["step"] == 2
        assert load_generator(run).from_seeds([0]).shape == (1, 16, 16, 3)
        (mnt / "filler").unlink()
        assert ganime.train(override(cfg, max_steps=4), run, resume=True, progress=False).step == 4
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# "continue" passes here too; left out to keep the suite fast (test_continue_policy_... covers that path)
@pytest.mark.parametrize("policy", ["stop"])
def test_file_size_limit_in_a_subprocess_via_the_cli(tmp_path, cfg, policy):
    """A real failing write (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) in a `ganime train --resume`
    process: one clear line and exit 2 (stop), or warnings and a clean finish (continue); the previous
    checkpoint stays complete and loadable either way."""
    import resource
    import sys

    run = tmp_path / "run"
    ganime.train(override(cfg, max_steps=2), run, progress=False)
    limit = (run / "ckpt-000000002" / "model.safetensors").stat().st_size // 2

    def small_files():  # in the child only; Python ignores SIGXFSZ, so the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from ganime.cli import main; sys.exit(main(sys.argv[1:]))", "train", "--resume", str(run), "--steps", "4", "--no-progress",
         "--on-save-error", policy],
        capture_output=True, text=True, preexec_fn=small_files, timeout=300, check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if policy == "stop":
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: could not save checkpoint") and "File too large" in last
        assert "the previous checkpoint is intact" in last
    else:
        assert proc.returncode == 0, proc.stderr
        assert "training continues (on-save-error=continue)" in proc.stderr
        assert "stopped" not in proc.stdout and "step 4" in proc.stdout  # it trained to the end
    assert_only_complete(run)
    assert json.loads((run / "latest.json").read_text())["step"] == 2
    assert load_generator(run).from_seeds([0]).shape == (1, 16, 16, 3)
    assert ganime.train(override(cfg, max_steps=4), run, resume=True, progress=False).step == 4  # space back
