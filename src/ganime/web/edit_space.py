"""What the page's edits need in Python, without the web stack: directions beside a generator, edits as the
permalink writes them, latents as base64url text, and a picture's nearest latent.

A stand-in for `ganime.directions`, `ganime.latent.encode_latent` and `ganime.invert` (the issue-30 backend
branch) with the same file format and arithmetic, kept to what the page uses; at merge these functions call
that API instead. The contract shared with the page (web/static/edits.js) and the ONNX sidecar:

- directions live in z: z' = z + sum(amount_i * d_i), before truncation; each d_i is a unit float32 vector;
- stored beside the weights: RUN/directions.{safetensors,json} or G.directions.{safetensors,json} next to
  G.safetensors; the JSON is {"version": 1, "z_dim", "directions": [{"name", "label", "kind", "group",
  "step", "range"}, ...]} in tensor order (the tensor key is the name);
- a permalink's edits are `e=name:amount,name:amount`; an inverted face's latent is `z=` base64url of its
  little-endian float32 values.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganime.errors import ConfigError
from ganime.generate import LoadedGenerator

MAX_EDITS = 16  # directions one face may carry
MAX_AMOUNT = 10.0  # |amount| in units of a direction (unit vectors in z: typical faces stay within 3)
MAX_Z = 64.0  # |z_i| a latent may hold (a standard normal never comes near)
GROUPS = ("colours", "details", "shape")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")  # as ganime.directions.NAME_RE


class EditError(ConfigError):
    """An edit or latent the generator cannot take (unknown direction, amount out of range, bad z)."""


@dataclass(frozen=True)
class Directions:
    """A generator's directions in z: `matrix` (n, z_dim) float32, one unit row per entry of `entries`."""

    entries: tuple[dict, ...]
    matrix: np.ndarray

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.entries]

    def to_json(self) -> dict:
        """The page's (and the ONNX sidecar's) form: the JSON entries plus the matrix as lists of floats."""
        return {"version": 1, "z_dim": int(self.matrix.shape[1]), "directions": list(self.entries),
                "matrix": self.matrix.astype(np.float32).tolist()}

    def apply(self, z: np.ndarray, edits: dict[str, float]) -> np.ndarray:
        """z (..., z_dim) plus the edits' offset: sum of amount * direction in the edits' order, in float32,
        then one add (ganime.latent.edit_offset's arithmetic; the browser's applyEdits rounds alike)."""
        index = {n: i for i, n in enumerate(self.names)}
        offset = np.zeros(self.matrix.shape[1], np.float32)
        for name, amount in edits.items():
            offset = offset + np.float32(amount) * self.matrix[index[name]]
        return (np.asarray(z, np.float32) + offset).astype(np.float32)


def directions_paths(gen: LoadedGenerator) -> tuple[Path, Path] | None:
    """(safetensors, json) of the directions stored beside a generator, if there are any."""
    src = Path(gen.source)
    candidates = []
    if src.suffix == ".safetensors":
        candidates.append(src.with_name(src.stem + ".directions"))
    else:  # a ckpt-* folder: the run's directions (RUN/directions.*), or the folder's own
        candidates += [src / "directions", src.parent / "directions"]
    for stem in candidates:
        tensors, meta = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
        if tensors.is_file() and meta.is_file():
            return tensors, meta
    return None


def load_directions(gen: LoadedGenerator) -> Directions | None:
    """The generator's directions, or None where it has none (a ConfigError if the files are unreadable).
    Where LoadedGenerator reads them itself (`gen.directions`, the issue-30 backend), its reading is used."""
    backend = getattr(gen, "directions", None)
    if backend is not None:
        if not len(backend):
            return None
        entries = tuple(d.to_dict() for d in backend.entries)
        return Directions(entries, backend.matrix.detach().cpu().numpy().astype(np.float32))
    paths = directions_paths(gen)
    if paths is None:
        return None
    from safetensors.numpy import load_file

    tensors_path, meta_path = paths
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
        entries = []
        for d in meta["directions"]:
            name = str(d["name"])
            if not _NAME.match(name):
                raise ValueError(f"direction name {name!r} is not a slug")
            group = d.get("group", "details")
            entries.append({"name": name, "label": str(d.get("label", name)), "kind": str(d.get("kind", "sefa")),
                            "group": group if group in GROUPS else "details",
                            "step": float(d.get("step", 0.5)), "range": float(d.get("range", 3.0))})
        matrix = np.stack([tensors[e["name"]].astype(np.float32).reshape(-1) for e in entries]) if entries else (
            np.zeros((0, gen.z_dim), np.float32))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{meta_path}: unreadable directions ({e})") from None
    if matrix.shape[1] != gen.z_dim:
        raise ConfigError(f"{tensors_path}: directions of {matrix.shape[1]} values for a z of {gen.z_dim}")
    return Directions(tuple(entries), matrix)


def save_directions(path_stem: Path, entries: list[dict], matrix: np.ndarray) -> tuple[Path, Path]:
    """Write directions as STEM.safetensors + STEM.json (the contract format; tests and tools use it)."""
    from safetensors.numpy import save_file

    matrix = np.asarray(matrix, np.float32)
    path_stem = Path(path_stem)
    tensors, meta = path_stem.with_name(path_stem.name + ".safetensors"), path_stem.with_name(path_stem.name + ".json")
    save_file({e["name"]: np.ascontiguousarray(row) for e, row in zip(entries, matrix)}, str(tensors))
    meta.write_text(json.dumps({"version": 1, "z_dim": int(matrix.shape[1]), "directions": entries}, indent=1))
    return tensors, meta


def parse_edits(text: str | None, directions: Directions | None) -> dict[str, float]:
    """`hair-red:1.5,sefa-0:-2` -> {"hair-red": 1.5, "sefa-0": -2.0}; EditError says what is allowed."""
    if not text:
        return {}
    known = directions.names if directions is not None else []
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if not sep:
            raise EditError(f"edit {part[:40]!r}: write name:amount, e.g. {known[0] if known else 'name'}:1.5")
        if name not in known:
            have = ", ".join(known) if known else "none"
            raise EditError(f"no direction {name[:40]!r} for this generator (it has: {have})")
        try:
            amount = float(value)
        except ValueError:
            raise EditError(f"edit {name}: amount {value[:20]!r} is not a number") from None
        if not math.isfinite(amount) or abs(amount) > MAX_AMOUNT:
            raise EditError(f"edit {name}: amount must be within -{MAX_AMOUNT:g}..{MAX_AMOUNT:g}")
        if amount:
            out[name] = amount
    if len(out) > MAX_EDITS:
        raise EditError(f"at most {MAX_EDITS} edits per face")
    return out


def format_edits(edits: dict[str, float]) -> str:
    """The permalink form of edits: `name:amount,...` with amounts as Python's shortest repr."""
    return ",".join(f"{n}:{a!r}" for n, a in edits.items() if a)


def encode_latent(z: np.ndarray) -> str:
    """A latent as base64url (no padding) of its little-endian float32 values."""
    return base64.urlsafe_b64encode(np.asarray(z, "<f4").tobytes()).decode().rstrip("=")


def decode_latent(text: str, z_dim: int) -> np.ndarray:
    """The inverse of `encode_latent`, checked: z_dim finite values within +-MAX_Z."""
    try:
        if not _BASE64URL.match(text):
            raise ValueError(text)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise EditError("z is not base64url text") from None
    if len(raw) != 4 * z_dim:
        raise EditError(f"z holds {len(raw) // 4} values; this generator's latent has {z_dim}")
    z = np.frombuffer(raw, "<f4").astype(np.float32)
    if not np.all(np.isfinite(z)) or np.abs(z).max() > MAX_Z:
        raise EditError(f"z must hold finite values within -{MAX_Z:g}..{MAX_Z:g}")
    return z


@dataclass(frozen=True)
class Inverted:
    """The latent found for a picture, its face (uint8 HWC), the mean squared pixel error in [0, 1] units."""

    z: np.ndarray
    image: np.ndarray
    loss: float
    seed: int  # the seed the search started from


def to_model_size(picture: np.ndarray, gen: LoadedGenerator) -> torch.Tensor:
    """A uint8 HxWx3 picture, centre-cropped square and resized to the model's size, as (1, C, R, R) in [-1, 1]."""
    from PIL import Image

    im = Image.fromarray(picture).convert("RGB" if gen.model.channels == 3 else "L")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((gen.resolution,) * 2, Image.LANCZOS)
    arr = np.asarray(im, np.float32).reshape(gen.resolution, gen.resolution, -1)
    return torch.from_numpy(arr / 127.5 - 1).permute(2, 0, 1)[None]


def pixel_error(image: np.ndarray, picture: np.ndarray, gen: LoadedGenerator) -> float:
    """Mean squared error in [0, 1] units between a face and a picture brought to the model's size."""
    face = torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    return float(((face - to_model_size(picture, gen)) ** 2).mean()) / 4


def search(gen: LoadedGenerator, picture: np.ndarray, time_budget_s: float, candidates: int) -> Inverted:
    """Search by picture with the backend's `ganime.invert` (pixel + feature loss) where it is installed,
    else with `invert` below; the error is the pixel error either way."""
    try:
        from ganime.invert import invert as backend_invert
    except ImportError:
        return invert(gen, picture, time_budget_s, candidates)
    found = backend_invert(gen, picture, seeds=candidates, time_budget_s=time_budget_s)
    z = found.z.detach().cpu().numpy().astype(np.float32).reshape(-1)
    return Inverted(z, found.image, pixel_error(found.image, picture, gen), int(found.seed))


def invert(gen: LoadedGenerator, picture: np.ndarray, time_budget_s: float = 5.0, candidates: int = 64,
           steps: int = 60, seed: int = 0) -> Inverted:
    """The latent whose face is nearest a picture: the best of `candidates` seeds by pixel error, then Adam
    on z through G (at most `steps` steps or the time budget), kept near the normal shell by a small prior."""
    started = time.monotonic()
    target = to_model_size(picture, gen).to(gen.device)
    nc = gen.model.num_classes
    rng = np.random.default_rng(seed)
    seeds = [int(s) for s in rng.integers(0, 2**53, candidates)]
    z0 = gen.latents(seeds)
    labels = torch.zeros(candidates, dtype=torch.long) if nc else None
    faces = torch.from_numpy(gen.images(z0, labels)).float().permute(0, 3, 1, 2) / 127.5 - 1
    errors = ((faces - target.cpu()) ** 2).flatten(1).mean(1)
    best = int(errors.argmin())
    z = z0[best : best + 1].clone().to(gen.device).requires_grad_(True)
    label = torch.zeros(1, dtype=torch.long, device=gen.device) if nc else None
    opt = torch.optim.Adam([z], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            if time.monotonic() - started > time_budget_s:
                break
            out = gen.G(z, label) if label is not None else gen.G(z)
            loss = ((out - target) ** 2).mean() + 1e-3 * (z.norm() - math.sqrt(gen.z_dim)) ** 2 / gen.z_dim
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                z.clamp_(-MAX_Z / 2, MAX_Z / 2)
    final = z.detach().cpu().float()
    image = gen.images(final, torch.zeros(1, dtype=torch.long) if nc else None)[0]
    return Inverted(final[0].numpy().astype(np.float32), image, pixel_error(image, picture, gen), seeds[best])
