"""One run, one writer: the lock a training process holds on its run directory (torch-free).

RUN/train.lock holds JSON naming its owner (pid, host, start time, command) and, on POSIX, an exclusive
`flock` for as long as the owner runs. The kernel drops a flock when its process dies, even by SIGKILL, so:

- the flock is free and the file is empty or gone: the run is free;
- the flock is held: another process on this host (or on a filesystem that shares locks) owns the run;
  the newcomer gets `RunLocked`, whose message names the owner;
- the flock is free but the file names an owner: that owner died without releasing it (crash, kill -9).
  On this host (its pid is gone, or belongs to a newer process) it is taken over with a warning. From another
  host nothing here can tell whether it still runs (network filesystems do not always share flocks), so
  only `force=True` (`--force-unlock`) takes it.

Readers (generate, eval, serve, export) never look at the lock: checkpoints are written atomically and read
only when complete (checkpoint.py), so they neither wait nor see a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ganime.errors import GanimeError

try:
    import fcntl
except ImportError:  # Windows: no flock; a lock file left behind by a crash then needs --force-unlock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = "train.lock"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class RunLocked(GanimeError):
    """Another process is training in this run directory (or may be, on another host)."""


def owner_info() -> dict[str, Any]:
    """What this process writes into the lock: who it is and what it runs."""
    argv = list(sys.argv) or ["python"]
    name = Path(argv[0]).name
    if name in ("ganime", "__main__.py"):
        argv[0] = "ganime"
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "pid_start": _pid_start(os.getpid()),
        "command": shlex.join(argv)[:300],
    }


def describe(owner: dict[str, Any]) -> str:
    """'pid 123 on host h, started 2026-12-05 20:15:50 UTC: ganime train ...'."""
    return (
        f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}: "
        f"{owner.get('command', '?')}"
    )


class RunLock:
    """The exclusive right to write a run directory; `release()` (or the end of its `with` block) gives it back."""

    def __init__(self, run_dir: str | Path, force: bool = False) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.force = force
        self._fd: int | None = None
        self._made_dir = False

    def acquire(self) -> None:
        """Take the lock or raise `RunLocked` naming its owner. Warns when it takes over a dead owner's lock."""
        if not self.path.parent.is_dir():
            self.path.parent.mkdir(parents=True)
            self._made_dir = True
        for _ in range(10):  # the owner may release (unlink) between our open and our flock: open again
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                if e.errno not in _DISK_FULL:
                    raise
                # the run's own writes will fail and say so under its --on-save-error policy; do not stop it here
                log.warning("cannot create %s (%s): training without the run lock", self.path, e.strerror)
                return
            try:
                if not _try_flock(fd):
                    raise RunLocked(self._busy_message(_read(fd)))
                if _same_file(fd, self.path):
                    self._take(fd)
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise RunLocked(f"could not lock {self.path}: it keeps being replaced; is another trainer starting here?")

    def release(self) -> None:
        """Remove the lock file and drop the flock (unlink first: a newcomer then never sees our stale JSON)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None
        if self._made_dir:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()

    def _take(self, fd: int) -> None:
        previous = _read(fd)
        if previous:
            self._check_stale(previous)
        try:
            _write(fd, json.dumps(owner_info(), indent=1).encode())
        except OSError as e:
            if e.errno not in _DISK_FULL:
                raise
            os.ftruncate(fd, 0)  # the flock holds all the same; a second writer is told "another process"
            log.warning("cannot write the owner into %s (%s); the lock holds all the same", self.path, e.strerror)
        self._fd = fd

    def _check_stale(self, owner: dict[str, Any]) -> None:
        """The flock was free but `owner` never released the file: take it over if that is safe."""
        here = socket.gethostname()
        run = self.path.parent
        if owner.get("host") != here:
            if not self.force:
                raise RunLocked(
                    f"{run} is locked by {describe(owner)}; that is another host, so ganime cannot tell whether it "
                    f"still trains. If it does not, rerun with --force-unlock"
                )
            log.warning("--force-unlock: taking over %s from %s", self.path, describe(owner))
            return
        if _pid_alive(owner.get("pid"), owner.get("pid_start")):
            # the flock says free, the pid says alive: a filesystem without flock, or a lock we cannot judge
            if not self.force:
                raise RunLocked(self._busy_message(owner) + "; if it is not training here, rerun with --force-unlock")
            log.warning("--force-unlock: taking over %s from the running %s", self.path, describe(owner))
            return
        log.warning("taking over the lock of %s: its owner (%s) is no longer running (crashed or killed)", run,
                    describe(owner))

    def _busy_message(self, owner: dict[str, Any] | None) -> str:
        who = describe(owner) if owner else "another process, which has not written its details"
        return (
            f"{self.path.parent} is in use by another training run ({who}); wait for it to finish or stop it, "
            "or train into another --out"
        )

    def __enter__(self) -> RunLock:  # noqa: PYI034 (typing.Self needs Python 3.11; we support 3.10)
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_owner(run_dir: str | Path) -> dict[str, Any] | None:
    """The owner a run's lock file names (None if there is none); for messages and tests."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without flock support: judge by the file's content alone
        return True
    return True


def _write(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 1 << 16)
        data = json.loads(raw) if raw.strip() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # cut short or garbled: it names no one
    return data if isinstance(data, dict) else None


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from its first owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: object, pid_start: object = None) -> bool:
    """Whether `pid` still runs the process that wrote the lock (True when it cannot be told)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    now = _pid_start(pid)
    return not (pid_start and now and now != pid_start)
