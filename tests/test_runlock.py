"""The run-directory lock (runlock.py): one writer; a dead owner's lock is taken over with a message, another
host's only with force; the message names the owner. Torch-free and fast: real processes, no training."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from ganime import runlock
from ganime.runlock import LOCK_FILE, RunLock, RunLocked

HOLDER = """
import sys, time
from ganime.runlock import RunLock
lock = RunLock(sys.argv[1]); lock.acquire()
print("HELD", flush=True)
time.sleep(600)
"""


def _holder(run):
    """A separate process that takes the lock and sleeps (as a trainer would, minus the training)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def _write_owner(run, **changes):
    run.mkdir(parents=True, exist_ok=True)
    owner = {**runlock.owner_info(), **changes}
    (run / LOCK_FILE).write_text(json.dumps(owner))
    return owner


def test_second_writer_is_refused_with_the_owner_named_then_the_lock_is_free_again(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        owner = runlock.read_owner(run)
        assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname()
        with pytest.raises(RunLocked) as e:
            RunLock(run).acquire()
        msg = str(e.value)
        assert "\n" not in msg
        assert f"{run} is in use by another training run (pid {proc.pid} on host {socket.gethostname()}" in msg
        assert f"started {owner['started']}" in msg and "-c" in msg  # the owner's command line
        with pytest.raises(RunLocked):  # force never breaks the lock of a process that holds it
            RunLock(run, force=True).acquire()
    finally:
        proc.terminate()
        proc.wait()
    with RunLock(run) as lock:  # SIGTERM'd: the kernel dropped its flock; the file named it: taken over
        assert runlock.read_owner(run)["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):  # one writer, even within one process
            RunLock(run).acquire()
        lock.release()
    assert not (run / LOCK_FILE).exists()  # released: no file left behind
    RunLock(run).acquire()


def test_a_killed_owner_is_taken_over_with_a_message(tmp_path, caplog):
    run = tmp_path / "run"
    proc = _holder(run)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert runlock.read_owner(run)["pid"] == proc.pid  # kill -9 left the file behind
    with caplog.at_level(logging.WARNING, logger="ganime.runlock"), RunLock(run):
        assert runlock.read_owner(run)["pid"] == os.getpid()
    assert f"taking over the lock of {run}: its owner (pid {proc.pid} on host" in caplog.text
    assert "no longer running" in caplog.text


def test_a_reused_pid_is_not_mistaken_for_the_owner(tmp_path, caplog):
    run = tmp_path / "run"
    _write_owner(run, pid=os.getpid(), pid_start="1")  # our pid, but a process that started at boot
    with caplog.at_level(logging.WARNING, logger="ganime.runlock"), RunLock(run):
        pass
    assert "no longer running" in caplog.text


def test_a_live_owner_without_flock_is_respected(tmp_path):
    """A filesystem that does not share flocks: the file names a live process of this host."""
    run = tmp_path / "run"
    _write_owner(run)  # this very process, with its real start time
    with pytest.raises(RunLocked, match="is in use by another training run"):
        RunLock(run).acquire()


def test_another_hosts_lock_needs_force(tmp_path, caplog):
    run = tmp_path / "run"
    _write_owner(run, host="gpu-node-7", pid=4242)
    with pytest.raises(RunLocked) as e:
        RunLock(run).acquire()
    assert "pid 4242 on host gpu-node-7" in str(e.value) and "--force-unlock" in str(e.value)
    assert runlock.read_owner(run)["host"] == "gpu-node-7"  # refused: untouched
    with caplog.at_level(logging.WARNING, logger="ganime.runlock"), RunLock(run, force=True):
        assert runlock.read_owner(run)["host"] == socket.gethostname()
    assert "--force-unlock: taking over" in caplog.text


def test_a_folder_made_for_the_lock_is_removed_when_nothing_was_written(tmp_path):
    with RunLock(tmp_path / "new" / "run"):
        pass
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "kept").mkdir()
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["config.json"]



def test_a_garbled_lock_file_with_no_holder_is_replaced(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text('{"pid": 12')  # cut short
    with RunLock(run):
        assert runlock.read_owner(run)["pid"] == os.getpid()


def test_a_full_disk_does_not_stop_the_lock(tmp_path, monkeypatch, caplog):
    """The owner's details cannot be written (ENOSPC): the flock still makes this process the one writer, and the
    run's own writes report the full disk under its --on-save-error policy (tests/reliability/test_disk_full.py)."""
    import errno

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runlock, "_write", full)
    with caplog.at_level(logging.WARNING, logger="ganime.runlock"), RunLock(tmp_path / "run"):
        assert "cannot write the owner" in caplog.text and "No space left" in caplog.text
        with pytest.raises(RunLocked, match="another process, which has not written its details"):
            RunLock(tmp_path / "run").acquire()


def test_cli_refuses_another_hosts_lock_in_one_line_until_force_unlock(tmp_path, capsys):
    from conftest import tiny_config, write_images
    from ganime.cli import main

    write_images(tmp_path / "imgs", 8)
    (tmp_path / "cfg.json").write_text(tiny_config(tmp_path / "imgs", tmp_path / "cache").to_json())
    run = tmp_path / "run"
    _write_owner(run, host="gpu-node-7", pid=4242, command="ganime train --out run")
    args = ["train", "--config", str(tmp_path / "cfg.json"), "--out", str(run), "--steps", "1", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run} is locked by pid 4242 on host gpu-node-7"), err
    assert "ganime train --out run" in err and "--force-unlock" in err and "Traceback" not in err
    assert not (run / "ckpt-000000001").exists()
    assert main([*args, "--force-unlock"]) == 0
    assert (run / "ckpt-000000001").is_dir() and not (run / LOCK_FILE).exists()
