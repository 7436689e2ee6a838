"""Finding edit directions for a generator (ganime.directions holds them, reads and writes them, and applies them).

- label-free, for any generator: SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in
  GANs"): the top eigenvectors of W^T W, W the weight of the layer that consumes z (a DCGAN's first transposed
  conv);
- named, from 0/1 labels of sampled latents (the faces attribute classifier's predictions, or gallery tags):
  the normal of a linear boundary in z (logistic regression), made conditional (InterFaceGAN, Shen et al. 2020,
  sec. 2.3) by removing its component along the other attributes' directions, then checked on other latents:
  one that does not raise its own label by MIN_GAIN at +CHECK_AMOUNT is left out (`effective`);
- and a preview sheet: each direction as a row of faces at amounts -3..3.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ganime.directions import (
    Direction,
    Directions,
    DirectionsError,
    Sampler,
)

log = logging.getLogger(__name__)

PREVIEW_AMOUNTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
MIN_EXAMPLES = 30  # positives (and negatives) a label needs before a direction is fitted to it
SAME_ABOVE = 0.7  # |cos| above which two gallery tags' directions count as one attribute when conditioning
CHECK_SEEDS = 500  # held-out faces (seeds 0..) on which each named direction must raise its own label
CHECK_AMOUNT = 3.0  # ... when moved this far (the sliders' range)
MIN_GAIN = 0.10  # ... by at least this share of faces (10 points: ~3 sigma of the difference at 500 faces)


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


def effective(directions: Directions, z: Tensor, label: Callable[[Tensor], dict[str, np.ndarray]],
              amount: float = CHECK_AMOUNT, min_gain: float = MIN_GAIN) -> tuple[Directions, dict[str, str]]:
    """The directions that do what their names say on the latents `z` (N, z_dim), and why the others were left
    out. `label(z)` gives, per direction name, which latents carry its label (e.g. the classifier's "red hair" on
    their faces); a direction is kept when moving every latent by `amount` along it raises that share by at least
    `min_gain`. Directions `label` does not name are kept unchecked."""
    before = label(z)
    keep, dropped = [], {}
    for d in directions.entries:
        if d.name not in before:
            keep.append(d.name)
            continue
        was = float(np.mean(before[d.name]))
        now = float(np.mean(label(directions.apply(z, {d.name: amount}))[d.name]))
        if now - was >= min_gain:
            keep.append(d.name)
        else:
            dropped[d.name] = (f"its label rises only from {was:.0%} to {now:.0%} of {len(z)} held-out faces at "
                               f"+{amount:g} (needs +{min_gain:.0%})")
    return directions.select(keep), dropped


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
                         classifier_path: str | Path | None = None, check_seeds: int = CHECK_SEEDS) -> Directions:
    """Named directions of a faces generator from the attribute classifier's predictions on `samples` faces
    (seeds 1,000,000 on), less those that fail `effective` on the faces of seeds 0..check_seeds-1 (0: unchecked;
    the left-out ones and why are in `info["named"]["checked"]`)."""
    from ganime.metrics.attribute_net import load_classifier, predict

    clf = load_classifier(classifier_path)

    def labels(z: Tensor) -> list[Labelled]:
        pred = np.concatenate([predict(clf, gen.images(z[i : i + 500]))[1] for i in range(0, len(z), 500)])
        return face_labels(clf.names, clf.values, pred)

    found = labelled_directions(z := sample_latents(gen, samples), labels(z), condition)
    info = {"labels": "faces attribute classifier predictions", "samples": samples, "conditional": condition}
    if check_seeds:
        found, dropped = effective(
            found, gen.latents(list(range(check_seeds))), lambda z: {x.direction.name: x.positive for x in labels(z)}
        )
        info["checked"] = {"seeds": check_seeds, "amount": CHECK_AMOUNT, "min_gain": MIN_GAIN, "dropped": dropped}
        if dropped:
            log.info("left out: %s", "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    return replace(found, info={"named": info})


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
