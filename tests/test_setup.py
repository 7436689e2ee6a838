"""scripts/setup.sh as a newcomer runs it: a virtual environment from a system Python, clear refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def scratch_checkout(dst: Path) -> Path:
    """The files setup.sh and an editable install need, copied (no .venv, runs or caches of this checkout)."""
    dst.mkdir()
    for name in ("src", "scripts"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    return dst


def setup_env(**extra: str) -> dict[str, str]:
    # as from a new shell: no active virtual environment (pytest itself may run in one) and no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def run_setup(checkout: Path, *args: str, timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/setup.sh", *args], cwd=checkout, env=setup_env(**env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def fake_python(path: Path, script: str) -> Path:
    path.write_text(f"#!/bin/sh\n{script}\nexec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="no system Python at /usr/bin/python3")
@pytest.mark.skipif(
    not (os.environ.get("CI") or os.environ.get("GANIME_TEST_SETUP")),
    reason="installs from the package index into a new venv (about a minute with pip's cache); "
    "runs in CI, or with GANIME_TEST_SETUP=1",
)
def test_setup_with_the_system_python_gives_a_working_ganime(tmp_path):
    checkout = scratch_checkout(tmp_path / "ganime")
    r = run_setup(checkout, timeout=1200, PYTHON=str(SYSTEM_PYTHON))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    venv_python = checkout / ".venv" / "bin" / "python"
    probe = "import sys, ganime, torch; print(sys.base_prefix, ganime.__file__, torch.__version__)"
    base, ganime_file, torch_version = subprocess.run(
        [venv_python, "-c", probe], env=setup_env(), capture_output=True, text=True, check=True
    ).stdout.split()
    # made from the system interpreter, running this checkout's code, with the CPU build of PyTorch
    assert Path(base).resolve() == Path(sys_base_prefix(SYSTEM_PYTHON)).resolve()
    assert Path(ganime_file).is_relative_to(checkout / "src")
    assert not torch_version.startswith("2.13.0+cu"), torch_version
    r = subprocess.run(
        [checkout / ".venv" / "bin" / "ganime", "--help"], env=setup_env(), capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "train" in r.stdout and "generate" in r.stdout, r.stdout + r.stderr


def sys_base_prefix(python: Path) -> str:
    probe = [python, "-c", "import sys; print(sys.base_prefix)"]
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(
    "python,says",
    [
        ("too-old", "ganime needs Python 3.10 or newer, {python} is 3.9"),
        ("no-venv", "{python} cannot make virtual environments; install its venv module (Debian/Ubuntu: sudo apt-get"),
        ("missing", "no {python} found; install Python 3.10-3.13 or set PYTHON="),
    ],
)
def test_setup_refuses_a_python_it_cannot_use_in_one_line(tmp_path, python, says):
    checkout = scratch_checkout(tmp_path / "ganime")
    if python == "too-old":  # answers a version question like Python 3.9
        python = str(fake_python(tmp_path / "python3.9", 'if [ "$1" = -c ]; then echo 3.9; exit 3; fi'))
    elif python == "no-venv":  # Debian's python3 without python3-venv
        python = str(
            fake_python(
                tmp_path / "python3",
                'if [ "$1" = -m ] && [ "$2" = venv ]; then echo "ensurepip is not available. On Debian/Ubuntu '
                'systems, you need to install the python3-venv package"; exit 1; fi',
            )
        )
    else:
        python = str(tmp_path / "no-such-python3")
    r = run_setup(checkout, PYTHON=python)
    assert r.returncode != 0
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {says.format(python=python)}"), r.stderr
    assert not (checkout / ".venv").exists()


def test_setup_refuses_an_unknown_option(tmp_path):
    r = run_setup(scratch_checkout(tmp_path / "ganime"), "--tests")
    assert r.returncode == 2 and r.stderr.strip() == "error: unknown option --tests (options: --test, --locked)"
