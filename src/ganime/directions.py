"""Directions in latent space: edit a face by moving its z, the same way in torch, ONNX and the browser.

An edit is z' = z + sum_i amount_i * d_i, applied to the latent BEFORE truncation; each stored direction d_i is a
unit-norm float32 vector of z_dim values, so an amount counts standard deviations of z ~ N(0, I) along d_i.
docs/directions.md has the file format and the measured effect of each shipped direction.

Two sources of directions:

- label-free, for any generator: SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in
  GANs"): the top eigenvectors of W^T W, W the weight of the layer that consumes z (a DCGAN's first transposed
  conv), i.e. the unit moves of z that change that layer's output the most;
- named, from 0/1 labels of sampled latents (the faces attribute classifier's predictions, or gallery tags):
  the normal of a linear boundary in z (logistic regression), then made conditional (InterFaceGAN, Shen et al.
  2020, sec. 2.3) by removing its component along the other attributes' directions, so that "red hair" does
  not also move the skin.

This module does not import ganime.generate (generate imports it to find a generator's stored directions);
it reads a generator through the few members named in `Sampler`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
PREVIEW_AMOUNTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
SUFFIX = ".directions"  # G.safetensors -> G.directions.safetensors (+ .json)
RUN_FILE = "directions"  # RUN/directions.safetensors (+ .json)
MIN_EXAMPLES = 30  # positives (and negatives) a label needs before a direction is fitted to it
SAME_ABOVE = 0.7  # |cos| above which two gallery tags' directions count as one attribute when conditioning


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


# --- SeFa --------------------------------------------------------------------------------------------------


def z_weight(G: nn.Module, z_dim: int) -> Tensor:
    """(z_dim, fan_out) float32: how the first layer that reads z maps it (its weight, z's rows only).

    The first Linear or ConvTranspose2d of G in module order (DCGAN's `main[0]`, the grown model's
    `trunk.main[0]`, FastGAN's `init[0]`); a class-conditional DCGAN concatenates z before the label code, so
    z's rows come first."""
    for module in G.modules():
        if isinstance(module, nn.ConvTranspose2d) and module.weight.shape[0] >= z_dim:
            return module.weight.detach().float().cpu()[:z_dim].reshape(z_dim, -1)
        if isinstance(module, nn.Linear) and module.weight.shape[1] >= z_dim:
            return module.weight.detach().float().cpu()[:, :z_dim].T.contiguous()
    raise DirectionsError(f"{type(G).__name__} has no linear layer reading z: SeFa cannot find its directions")


def sefa(gen: Sampler, k: int = 8) -> Directions:
    """The top-k SeFa directions: unit eigenvectors of A^T A (A: z -> the first layer's output), largest first.

    Each is given the sign that makes its largest |component| positive, so the same weights always give the
    same vectors."""
    W = z_weight(gen.G, gen.z_dim).double()  # (z_dim, fan_out): output = W^T z
    values, vectors = torch.linalg.eigh(W @ W.T)  # ascending
    k = min(k, gen.z_dim)
    top = vectors[:, torch.argsort(values, descending=True)[:k]].T  # (k, z_dim)
    signs = torch.sign(top.gather(1, top.abs().argmax(1, keepdim=True)))
    top = (top * signs).float()
    top = top / top.norm(dim=1, keepdim=True)
    total = float(values.clamp(min=0).sum())
    shares = [float(v) / total for v in values.sort(descending=True).values[:k]] if total > 0 else [0.0] * k
    entries = tuple(Direction(f"sefa-{i}", f"Factor {i + 1}", "sefa", "shape", 1.0, 3.0) for i in range(k))
    return Directions(entries, top, {"sefa": {"layer_energy_share": [round(s, 4) for s in shares]}})


# --- named directions from labels --------------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """0/1 labels of the sampled latents for one direction to fit; `attribute` groups values of one attribute
    (hair colours): a direction is made conditional on the other attributes' directions, not on its siblings."""

    direction: Direction
    attribute: str
    positive: np.ndarray  # bool (N,)


def fit_boundary(z: Tensor, positive: np.ndarray | Tensor, l2: float = 1e-3, steps: int = 100) -> Tensor:
    """Unit normal (z_dim,) of a class-balanced L2-regularised logistic regression separating positive latents
    from the others, pointing toward the positives (InterFaceGAN's boundary, with a logistic loss)."""
    y = torch.as_tensor(np.asarray(positive), dtype=torch.float32).reshape(-1)
    z = z.float().cpu()
    n_pos = float(y.sum())
    if n_pos < 1 or n_pos > len(y) - 1:
        raise DirectionsError("a direction needs both positive and negative examples")
    weight = torch.where(y > 0, 0.5 / n_pos, 0.5 / (len(y) - n_pos))  # balanced: rare labels count as much
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (weight * nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none")).sum()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w = w.detach()
    if not torch.isfinite(w).all() or float(w.norm()) == 0:
        raise DirectionsError("the boundary fit failed (no separable signal in these labels)")
    return w / w.norm()


def conditional(matrix: Tensor, attributes: Sequence[str], same_above: float | None = None) -> Tensor:
    """Each row minus its projection on the span of the rows of OTHER attributes, renormalised (InterFaceGAN's
    conditional manipulation): moving along it leaves the other attributes' boundaries where they were.

    With `same_above`, rows nearly parallel or opposite to it (|cos| > same_above) count as the same attribute:
    gallery tags such as "happy" and "calm", where one is the other's absence, would otherwise remove each other.
    (Not for the classifier's attributes: there a large |cos| between, say, dark skin and glasses is a confound
    in the samples, exactly what conditioning is for.)"""
    out = []
    for i, attr in enumerate(attributes):
        d = matrix[i].double()
        cos = (matrix.double() @ d) / (matrix.double().norm(dim=1) * d.norm()).clamp(min=1e-12)
        near = [same_above is not None and abs(float(c)) > same_above for c in cos]
        others = matrix[[j for j, a in enumerate(attributes) if a != attr and not near[j]]]
        if len(others):
            q, _ = torch.linalg.qr(others.double().T)  # orthonormal basis of their span (z_dim, m)
            d = d - q @ (q.T @ d)
        norm = float(d.norm())
        out.append((d / norm).float() if norm > 1e-6 else matrix[i])
    return torch.stack(out) if out else matrix


def labelled_directions(z: Tensor, labels: Sequence[Labelled], condition: bool = True,
                        min_examples: int = MIN_EXAMPLES, same_above: float | None = None) -> Directions:
    """One direction per label set with at least `min_examples` positives and negatives, fitted on the latents z
    (N, z_dim); conditional on the other attributes when `condition`."""
    kept, rows, skipped = [], [], []
    for lab in labels:
        n_pos = int(np.asarray(lab.positive).sum())
        if min(n_pos, len(z) - n_pos) < min_examples:
            skipped.append(f"{lab.direction.name} ({n_pos} of {len(z)})")
            continue
        kept.append(lab)
        rows.append(fit_boundary(z, lab.positive))
    if skipped:
        log.info("too few examples (< %d) for: %s", min_examples, ", ".join(skipped))
    if not kept:
        return Directions((), torch.zeros(0, z.shape[1]))
    matrix = torch.stack(rows)
    if condition:
        matrix = conditional(matrix, [lab.attribute for lab in kept], same_above)
    return Directions(tuple(lab.direction for lab in kept), matrix)


# The faces classifier's values (ganime.metrics.attribute_net), as a person names them. Hair colours are the
# DiceBear palette's hex codes.
HAIR_COLOURS = {
    "0e0e0e": "black", "3eac2c": "green", "562306": "dark-brown", "592454": "plum", "6a4e35": "brown",
    "796a45": "olive", "85c2c6": "teal", "ab2a18": "red", "ac6511": "copper", "afafaf": "grey",
    "b9a05f": "sand", "cb6820": "orange", "dba3be": "pink", "e5d7a3": "blonde",
}
SKIN_COLOURS = {"763900": "dark", "9e5622": "brown", "ecad80": "tan", "f2d3b1": "light"}


def face_labels(names: Sequence[str], values: Sequence[Sequence[str]], pred: np.ndarray) -> list[Labelled]:
    """Label sets for named directions from the faces classifier's predictions `pred` (N, attributes)."""
    col = {n: i for i, n in enumerate(names)}
    out: list[Labelled] = []

    def add(name: str, label: str, group: str, attribute: str, positive: np.ndarray) -> None:
        out.append(Labelled(Direction(name, label, "named", group, 1.0, 3.0), attribute, positive))

    if "hairColor" in col:
        for i, hexcode in enumerate(values[col["hairColor"]]):
            colour = HAIR_COLOURS.get(hexcode, hexcode)
            add(f"hair-{colour}", f"{colour.replace('-', ' ').capitalize()} hair", "colours", "hairColor",
                pred[:, col["hairColor"]] == i)
    if "skinColor" in col:
        for i, hexcode in enumerate(values[col["skinColor"]]):
            tone = SKIN_COLOURS.get(hexcode, hexcode)
            add(f"skin-{tone}", f"{tone.capitalize()} skin", "colours", "skinColor", pred[:, col["skinColor"]] == i)
    if "hair" in col:
        long = np.array([v.startswith("long") for v in values[col["hair"]]])
        add("long-hair", "Long hair", "shape", "hair", long[pred[:, col["hair"]]])
    for attr, label in (("glasses", "Glasses"), ("earrings", "Earrings")):
        if attr in col and "none" in values[col[attr]]:
            add(attr, label, "details", attr, pred[:, col[attr]] != values[col[attr]].index("none"))
    if "features" in col:
        for i, v in enumerate(values[col["features"]]):
            if v != "none":
                add(v, v.capitalize(), "details", f"features-{v}", pred[:, col["features"]] == i)
    return out


def sample_latents(gen: Sampler, n: int, first_seed: int = 1_000_000) -> Tensor:
    """n latents from consecutive seeds (well away from the seeds people browse first)."""
    return gen.latents(list(range(first_seed, first_seed + n)))


def is_faces_generator(gen: Sampler) -> bool:
    """Whether the faces classifier can label this generator's images: trained on a faces set, 64 px or more."""
    data = gen.meta.get("data")
    data = data.get("path", "") if isinstance(data, dict) else data
    card = gen.meta.get("card") if isinstance(gen.meta.get("card"), dict) else {}
    said = f"{data} {card.get('dataset', '')}".lower()
    return "face" in said and gen.resolution >= 64


def attribute_directions(gen: Sampler, samples: int = 10_000, condition: bool = True,
                         classifier_path: str | Path | None = None) -> Directions:
    """Named directions of a faces generator from the attribute classifier's predictions on `samples` faces."""
    from ganime.metrics.attribute_net import load_classifier, predict

    clf = load_classifier(classifier_path)
    z = sample_latents(gen, samples)
    preds = []
    for i in range(0, samples, 500):
        preds.append(predict(clf, gen.images(z[i : i + 500]))[1])
    pred = np.concatenate(preds)
    found = labelled_directions(z, face_labels(clf.names, clf.values, pred), condition)
    return replace(found, info={"named": {"labels": "faces attribute classifier predictions", "samples": samples,
                                          "conditional": condition}})


def tag_directions(gen: Sampler, items: Iterable[tuple[int, Sequence[str]]], min_examples: int = MIN_EXAMPLES,
                   condition: bool = True) -> Directions:
    """Named directions from tagged faces, e.g. a gallery's (seed, tags) pairs: one per tag with at least
    `min_examples` faces with it and without it. Each tag is its own attribute (made conditional on the others)."""
    items = [(int(s), [str(t) for t in tags]) for s, tags in items]
    if not items:
        return Directions((), torch.zeros(0, gen.z_dim))
    z = gen.latents([s for s, _ in items])
    counts: dict[str, int] = {}
    for _, tags in items:
        for t in set(tags):
            counts[t] = counts.get(t, 0) + 1
    labels = []
    for tag in sorted(counts):
        slug = re.sub(r"[^a-z0-9_-]+", "-", tag.lower()).strip("-")[:60] or "tag"
        positive = np.array([tag in tags for _, tags in items])
        labels.append(Labelled(Direction(f"tag-{slug}", f"Tag: {tag}", "tag", "details", 1.0, 3.0), f"tag:{tag}", positive))
    found = labelled_directions(z, labels, condition, min_examples, same_above=SAME_ABOVE)
    return replace(found, info={"tags": {"items": len(items), "min_examples": min_examples}})


def compute_directions(gen: Sampler, samples: int = 10_000, sefa_k: int = 8, attributes: bool | None = None,
                       tagged: Iterable[tuple[int, Sequence[str]]] | None = None, condition: bool = True) -> Directions:
    """Every direction this generator can have: SeFa's, the attribute classifier's (faces generators; None =
    when `is_faces_generator`), and the tags' (when tagged faces are given)."""
    found = sefa(gen, sefa_k) if sefa_k else Directions((), torch.zeros(0, gen.z_dim))
    use_attrs = is_faces_generator(gen) if attributes is None else attributes
    if use_attrs:
        if gen.resolution < 64:
            raise DirectionsError(f"attribute directions need faces of 64 px or more; this generator makes {gen.resolution} px")
        found = attribute_directions(gen, samples, condition) + found
    if tagged is not None:
        found = found + tag_directions(gen, tagged, condition=condition)
    return found


# --- preview -----------------------------------------------------------------------------------------------


def preview_sheet(gen: Sampler, directions: Directions, seed: int = 7, amounts: Sequence[float] = PREVIEW_AMOUNTS,
                  truncation: float = 1.0, label_width: int = 150,
                  images: Callable[[Tensor], np.ndarray] | None = None) -> np.ndarray:
    """uint8 HWC sheet: a row per direction (its label on the left), one face per amount (-3..+3 by default)."""
    from PIL import Image, ImageDraw, ImageFont

    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=11)
    base = gen.latents([seed])[0]
    n, r, pad = len(amounts), gen.resolution, 2
    top = 18
    sheet = Image.new("RGB", (label_width + n * (r + pad) + pad, top + max(1, len(directions)) * (r + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for k, a in enumerate(amounts):
        draw.text((label_width + pad + k * (r + pad) + r // 2 - 8, 2), f"{a:+g}", fill=(60, 60, 60), font=font)
    for row, d in enumerate(directions.entries):
        z = torch.stack([directions.apply(base, {d.name: float(a)}) for a in amounts])
        faces = gen.images(z, truncation=truncation) if images is None else images(z)
        y = top + pad + row * (r + pad)
        draw.text((4, y + r // 2 - 16), d.label[:20], fill=(0, 0, 0), font=font)
        draw.text((4, y + r // 2 + 2), d.name[:24], fill=(110, 110, 110), font=small)
        for k, face in enumerate(faces):
            sheet.paste(Image.fromarray(face), (label_width + pad + k * (r + pad), y))
    return np.asarray(sheet)
