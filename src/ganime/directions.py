"""Directions in latent space: edit a face by moving its z, the same way in torch, ONNX and the browser.

An edit is z' = z + sum_i amount_i * d_i, applied to the latent BEFORE truncation; each stored direction d_i is a
unit-norm float32 vector of z_dim values, so an amount counts standard deviations of z ~ N(0, I) along d_i.
docs/directions.md has the file format and the measured effect of each shipped direction.

This module holds directions, checks edits, and reads and writes the files beside a generator's weights; finding
them (SeFa, attribute boundaries, gallery tags) and their preview sheet are in ganime.direction_fit. It does not
import ganime.generate (generate imports it to find a generator's stored directions); it reads a generator
through the few members named in `Sampler`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ganime.errors import CheckpointError, ConfigError
from ganime.io import atomic_path, atomic_write_json
from ganime.latent import MAX_EDIT, edit_offset
from ganime.latent import check_edits as _check_edits
from ganime.latent import parse_edits as _parse_edits

log = logging.getLogger(__name__)

VERSION = 1
KINDS = ("sefa", "named", "tag")
GROUPS = ("colours", "details", "shape")
MAX_AMOUNT = MAX_EDIT  # |amount| accepted by parse_edits / check_edits
NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
SUFFIX = ".directions"  # G.safetensors -> G.directions.safetensors (+ .json)
RUN_FILE = "directions"  # RUN/directions.safetensors (+ .json)


class DirectionsError(ConfigError):
    """Unknown direction names, bad edit amounts, or a directions file that does not fit its generator."""


class Sampler(Protocol):
    """What this module reads of a generator (ganime.generate.LoadedGenerator has it)."""

    G: nn.Module
    source: str
    meta: dict

    @property
    def z_dim(self) -> int: ...

    @property
    def resolution(self) -> int: ...

    def latents(self, seeds: list[int]) -> Tensor: ...

    def images(self, z: Tensor, labels: Tensor | None = None, truncation: float = 1.0) -> np.ndarray: ...


@dataclass(frozen=True)
class Direction:
    """One direction's description (its vector is the matching row of `Directions.matrix`)."""

    name: str  # slug, the tensor key and the CLI's NAME in --edit NAME=AMOUNT
    label: str  # what a person reads
    kind: str  # "sefa" | "named" | "tag"
    group: str  # "colours" | "details" | "shape"
    step: float = 1.0  # a good small step for "variations"
    range: float = 3.0  # slider max |amount|

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind, "group": self.group,
                "step": float(self.step), "range": float(self.range)}


@dataclass(frozen=True)
class Directions:
    """Named unit vectors in z space, in a fixed order."""

    entries: tuple[Direction, ...]
    matrix: Tensor  # float32 (K, z_dim), unit rows, on the CPU
    info: dict = field(default_factory=dict)  # how they were made (written to the JSON, not needed to apply)

    def __post_init__(self) -> None:
        names = [d.name for d in self.entries]
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(names):
            raise DirectionsError(f"{len(names)} directions need a ({len(names)}, z_dim) matrix, got {tuple(self.matrix.shape)}")
        if len(set(names)) != len(names):
            raise DirectionsError("direction names must be unique")
        for d in self.entries:
            check_entry(d)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.entries]

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.entries]

    @property
    def groups(self) -> list[str]:
        return [d.group for d in self.entries]

    @property
    def z_dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.entries)

    def vector(self, name: str) -> Tensor:
        """The unit vector (z_dim,) of one direction."""
        return self.matrix[self._index(name)]

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(self.names) or "none"
            raise DirectionsError(f"unknown direction {name!r}; this generator has: {known}") from None

    def offset(self, edits: dict[str, float]) -> Tensor:
        """sum_i amount_i * d_i, float32 (z_dim,): what an edit adds to every latent (ganime.latent.edit_offset,
        the torch-free runner's arithmetic too)."""
        return torch.from_numpy(edit_offset(edits, self.names, self.matrix.numpy()))

    def apply(self, z: Tensor, edits: dict[str, float]) -> Tensor:
        """z (N, z_dim) or (z_dim,) moved by the edits: z + sum_i amount_i * d_i (before any truncation)."""
        if z.shape[-1] != self.z_dim:
            raise DirectionsError(f"latents have {z.shape[-1]} values, these directions {self.z_dim}")
        if not edits:
            return z
        return z + self.offset(edits).to(z.device, z.dtype)

    def select(self, names: Iterable[str]) -> Directions:
        """The named directions only, in the given order."""
        idx = [self._index(n) for n in names]
        return Directions(tuple(self.entries[i] for i in idx), self.matrix[idx].clone(), dict(self.info))

    def __add__(self, other: Directions) -> Directions:
        if len(self) and len(other) and other.z_dim != self.z_dim:
            raise DirectionsError(f"cannot join directions of z_dim {self.z_dim} and {other.z_dim}")
        if not len(self):
            return other
        if not len(other):
            return self
        return Directions(self.entries + other.entries, torch.cat([self.matrix, other.matrix]), self.info | other.info)

    def to_json(self) -> dict:
        """directions.json: version, z_dim and one entry per direction, in the tensors' order."""
        return {"version": VERSION, "z_dim": self.z_dim, "directions": [d.to_dict() for d in self.entries],
                **({"info": self.info} if self.info else {})}

    def sidecar_entry(self) -> dict:
        """The ONNX sidecar's "directions": the JSON above with each unit vector as exact float32 values."""
        out = self.to_json()
        for entry, row in zip(out["directions"], self.matrix.numpy().astype(np.float32)):
            entry["vector"] = [float(v) for v in row]
        return out


def check_entry(d: Direction) -> None:
    """A direction's description as the file format allows it (a user error otherwise)."""
    if not NAME_RE.match(d.name):
        raise DirectionsError(f"direction name {d.name!r} must be 1-64 of a-z, 0-9, '_' and '-'")
    if d.kind not in KINDS:
        raise DirectionsError(f"direction {d.name}: kind {d.kind!r} is not one of {', '.join(KINDS)}")
    if d.group not in GROUPS:
        raise DirectionsError(f"direction {d.name}: group {d.group!r} is not one of {', '.join(GROUPS)}")
    if not (0 < d.step <= MAX_AMOUNT and 0 < d.range <= MAX_AMOUNT):
        raise DirectionsError(f"direction {d.name}: step and range must be in (0, {MAX_AMOUNT:g}]")


def parse_edits(items: Sequence[str], directions: Directions | None = None) -> dict[str, float]:
    """["hair-red=1.5", "sefa-0=-1"] -> {"hair-red": 1.5, "sefa-0": -1.0}, checked against `directions` when
    given (a ConfigError for a malformed item, an unknown name or |amount| > MAX_AMOUNT). A name given twice adds up."""
    return _parse_edits(items, None if directions is None else directions.names)


def check_edits(edits: dict[str, float], directions: Directions | None = None) -> dict[str, float]:
    """Edits with known names and finite amounts within +-MAX_AMOUNT (a ConfigError otherwise)."""
    return _check_edits(edits, None if directions is None else directions.names)


# --- files -------------------------------------------------------------------------------------------------


def directions_path(source: str | Path) -> Path:
    """Where a generator's directions live: RUN/directions.safetensors for a run (or one of its ckpt-* dirs),
    G.directions.safetensors beside a generator file G.safetensors. Each has a .json twin."""
    p = Path(source)
    if p.suffix == ".safetensors":
        return p.with_name(p.name[: -len(".safetensors")] + SUFFIX + ".safetensors")
    if p.name.startswith("ckpt-"):
        p = p.parent
    return p / f"{RUN_FILE}.safetensors"


def json_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_directions(directions: Directions, path: str | Path) -> Path:
    """Write the unit vectors (float32 safetensors, key = name) and the .json beside them; returns the .safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise DirectionsError(f"{path} must end in .safetensors (the .json goes beside it)")
    tensors = {d.name: directions.matrix[i].float().contiguous() for i, d in enumerate(directions.entries)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "ganime-directions", "version": str(VERSION)})
    atomic_write_json(json_path(path), directions.to_json(), newline=True)
    return path


def read_directions(path: str | Path) -> Directions:
    """Directions from a .safetensors file and its .json (a CheckpointError when missing or malformed)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        meta = json.loads(json_path(path).read_text())
        entries = tuple(
            Direction(str(d["name"]), str(d["label"]), str(d["kind"]), str(d["group"]), float(d["step"]), float(d["range"]))
            for d in meta["directions"]
        )
        if int(meta.get("version", 0)) > VERSION:
            raise CheckpointError(f"{json_path(path)} was written by a newer ganime (version {meta['version']}); upgrade")
        with safe_open(str(path), framework="pt") as f:
            rows = [f.get_tensor(d.name).float().reshape(-1) for d in entries]
    except FileNotFoundError as e:
        raise CheckpointError(f"{e.filename or path} is missing: make directions with `ganime directions`") from None
    except (KeyError, TypeError, ValueError, SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a ganime directions file ({type(e).__name__}: {e})") from None
    z_dim = int(meta.get("z_dim", rows[0].numel() if rows else 0))
    if any(r.numel() != z_dim for r in rows):
        raise CheckpointError(f"{path}: every direction must have z_dim = {z_dim} values")
    matrix = torch.stack(rows) if rows else torch.zeros(0, z_dim)
    return Directions(entries, matrix, meta.get("info") or {})


def find_directions(source: str | Path) -> Directions | None:
    """The directions stored beside a generator's weights, or None when it has none."""
    path = directions_path(source)
    return read_directions(path) if path.is_file() else None


def load_directions(path_or_gen: str | Path | Sampler) -> Directions:
    """A generator's directions: from a directions .safetensors file, from beside a generator's weights (a run
    dir, ckpt dir or generator file), or from a loaded generator (its `source`)."""
    if hasattr(path_or_gen, "source"):
        gen = path_or_gen
        found = find_directions(gen.source)
        if found is None:
            raise DirectionsError(f"{gen.source} has no directions; make them with `ganime directions {gen.source}`")
        if found.z_dim != gen.z_dim:
            raise DirectionsError(f"the directions beside {gen.source} have z_dim {found.z_dim}, the generator {gen.z_dim}")
        return found
    p = Path(path_or_gen)
    if p.name.endswith(".directions.safetensors") or (p.suffix == ".safetensors" and json_path(p).is_file()
                                                       and _is_directions_json(json_path(p))):
        return read_directions(p)
    found = find_directions(p)
    if found is None:
        raise DirectionsError(f"{p} has no directions ({directions_path(p)} is missing); make them with `ganime directions`")
    return found


def _is_directions_json(path: Path) -> bool:
    try:
        return "directions" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False
