"""Checkpoints as data: tensors in safetensors, everything else in JSON; written atomically, never pickled.

Layout of a run dir:
    config.json            the resolved TrainConfig
    ckpt-000000420/        one complete checkpoint (written as .tmp-*, fsynced, then renamed)
        model.safetensors  G.*, D.*, G_ema.* state dicts
        train.safetensors  optimizer tensors (opt_G.*, opt_D.*) and RNG states (rng.*)
        state.json         step, epoch, position, config, optimizer param groups, numpy/python RNG, version
    latest.json            {"checkpoint": "ckpt-000000420"}; replaced only after a complete write
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ganime import io
from ganime.errors import CheckpointError

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT_VERSION = 1
MODEL_FILE, TRAIN_FILE, STATE_FILE, LATEST_FILE = "model.safetensors", "train.safetensors", "state.json", "latest.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as one safetensors file at `path` and fsync it (not atomic: callers write into a temp
    dir, or wrap it in `ganime.io.atomic_path`)."""
    # safetensors refuses shared or non-contiguous storage: give it plain CPU copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(path), metadata=metadata)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _io_reason(e: BaseException) -> str:
    """'No space left on device' from an OSError or from safetensors' 'I/O error: ... (os error 28)' text."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    m = re.search(r"I/O error: (.*?)(?: \(os error \d+\))?$", str(e))
    return m.group(1) if m else str(e)


def atomic_write_json(path: Path, obj: Any) -> None:
    """A run's own JSON file (latest.json, config.json): `ganime.io.atomic_write_json`, then the folder is
    fsynced too; a failed write is a CheckpointError (the run cannot go on). Other files use ganime.io."""
    try:
        io.atomic_write_json(path, obj)
    except OSError as e:  # disk full, read-only folder: the old file (if any) is untouched
        raise CheckpointError(f"could not write {path}: {e.strerror or e}; the previous version is intact") from None
    _fsync_dir(path.parent)


def flatten_state_dicts(**modules: dict[str, Tensor]) -> dict[str, Tensor]:
    """{"G": sd, "D": sd} -> {"G.layer.weight": t, ...}."""
    return {f"{prefix}.{k}": v for prefix, sd in modules.items() for k, v in sd.items()}


def unflatten(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Inverse of `flatten_state_dicts` for one prefix."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, Tensor], list[dict]]:
    """Optimizer state as flat tensors plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{pid}.{key}"] = t
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[dict], prefix: str) -> None:
    """Load what `optimizer_to_flat` produced into `opt`."""
    state: dict[int, dict[str, Tensor]] = {}
    p = prefix + "."
    for name, t in tensors.items():
        if not name.startswith(p):
            continue
        pid, key = name[len(p) :].split(".", 1)
        state.setdefault(int(pid), {})[key] = t
    fixed = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    try:
        opt.load_state_dict({"state": state, "param_groups": fixed})
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"optimizer state does not fit this model: {e}") from None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_tensors: dict[str, Tensor],
    train_tensors: dict[str, Tensor],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ckpt-<step>/ atomically, move latest.json to it, prune to the newest `keep`."""
    run_dir = Path(run_dir)
    name = f"ckpt-{step:09d}"
    final = run_dir / name
    tmp = run_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        save_tensors(tmp / MODEL_FILE, model_tensors)
        save_tensors(tmp / TRAIN_FILE, train_tensors)
        io.atomic_write_json(tmp / STATE_FILE, {**state, "format_version": FORMAT_VERSION, "step": step})
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. epoch end then exit): swap atomically
            old = run_dir / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(run_dir)
        atomic_write_json(run_dir / LATEST_FILE, {"checkpoint": name, "step": step})
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, SafetensorError)):
            raise CheckpointError(
                f"could not save checkpoint {final}: {_io_reason(e)}; the previous checkpoint is intact"
            ) from None
        raise
    prune(run_dir, keep)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints in `run_dir`, oldest first (temp dirs are never listed)."""
    out = [p for p in Path(run_dir).glob("ckpt-*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(out, key=lambda p: p.name)


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (never the one latest.json names)."""
    latest = latest_checkpoint(run_dir)
    ckpts = list_checkpoints(run_dir)
    for p in ckpts[: max(0, len(ckpts) - keep)]:
        if latest is None or p.resolve() != latest.resolve():
            # rename first: a kill mid-delete must never leave a ckpt-* dir with some files gone
            gone = p.with_name(f".del-{p.name}-{os.getpid()}")
            try:
                os.replace(p, gone)
            except OSError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
    for pattern in (".tmp-ckpt-*", ".del-ckpt-*", ".old-ckpt-*"):  # left by a killed process
        for stale in Path(run_dir).glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint latest.json points to, else (with a warning) the newest complete one, else None."""
    run_dir = Path(run_dir)
    named = None
    try:
        named = str(json.loads((run_dir / LATEST_FILE).read_text())["checkpoint"])
        p = run_dir / named
        if "/" not in named and is_complete(p):
            return p
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ckpts = [p for p in reversed(list_checkpoints(run_dir)) if is_complete(p)]
    if named is not None or (run_dir / LATEST_FILE).exists():
        log.warning(
            "%s names %s, which is missing or incomplete; using %s",
            run_dir / LATEST_FILE, named, ckpts[0].name if ckpts else "nothing",
        )
    return ckpts[0] if ckpts else None


def _safetensors_complete(path: Path) -> bool:
    # a safetensors file is 8 bytes of header length, the JSON header, then the data its offsets cover
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > MAX_HEADER_BYTES:
                return False
            header = json.loads(f.read(n))
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(header, dict):
        return False
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    return size == 8 + n + max(ends, default=0)


def is_complete(ckpt: Path) -> bool:
    """Cheap check that a checkpoint dir holds a readable state.json and two whole safetensors files."""
    try:
        state = json.loads((Path(ckpt) / STATE_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(state, dict) and "config" in state
        and _safetensors_complete(Path(ckpt) / MODEL_FILE) and _safetensors_complete(Path(ckpt) / TRAIN_FILE)
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """A run dir (-> its latest checkpoint) or a checkpoint dir; clear errors otherwise."""
    p = Path(path).expanduser()
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{p} is a pickle file; ganime never unpickles (it can run code). Load ganime checkpoints "
            "(a run dir, a ckpt-* dir or a .safetensors generator)"
        )
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run dir (runs/NAME) or a checkpoint dir (ckpt-*)")
    if (p / STATE_FILE).is_file():
        return p
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise CheckpointError(f"{p} holds no checkpoint yet; train first (ganime train --out {p})")
        return found
    raise CheckpointError(f"{p} is not a ganime run or checkpoint directory")


def read_checkpoint(path: str | Path, read: Callable[[Path], T], tries: int = 3) -> T:
    """`read(ckpt)` on the checkpoint `path` names (a run dir: its latest complete one). A trainer may prune that
    checkpoint while it is being read (it saved a newer one; small --keep): then the run's newest is read."""
    given = Path(path).expanduser()
    for attempt in range(tries):
        ckpt = resolve_checkpoint(given)
        try:
            return read(ckpt)
        except CheckpointError:
            if attempt + 1 == tries or ckpt == given or ckpt.exists():  # asked for that one, or it is damaged
                raise
            log.info("%s was replaced by a newer checkpoint while being read; reading the newest", ckpt)
    raise AssertionError("unreachable")


def read_state(ckpt: Path) -> dict[str, Any]:
    """state.json of a checkpoint."""
    path = Path(ckpt) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(state, dict) or "config" not in state:
        raise CheckpointError(f"{path} is not a ganime checkpoint state (no 'config')")
    return state


def read_tensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file, with a clear error for missing, truncated or tampered files."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({e})") from None


def load_module(module: torch.nn.Module, tensors: dict[str, Tensor], what: str) -> None:
    """load_state_dict with a clear error naming what does not fit."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{what} does not fit the model: {' '.join(first[:3])[:300]}") from None
