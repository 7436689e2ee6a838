"""Evaluate a trained generator against its data: sample it, run the named metrics, write a JSON report.

`ganime eval` is a thin layer over `evaluate()` (public as `ganime.evaluate`). Each report says what its numbers
are: the metric's feature space, how many real and generated images were used, and with which seed. The scores
logged while training are training/periodic_eval.py's (it reuses this module's real-image helpers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganime.checkpoint import STATE_FILE, read_state, resolve_checkpoint
from ganime.config import DataConfig, TrainConfig
from ganime.data.dataset import cache_root, load_dataset, resolve_source
from ganime.errors import ConfigError, DataError
from ganime.generate import PRETRAINED, LoadedGenerator, load_generator
from ganime.io import atomic_write_json
from ganime.metrics import DEFAULT_METRICS, compute, parse_names
from ganime.metrics.attributes import ATTRS_LABEL, check_faces_source
from ganime.metrics.features import (
    FALLBACK_LABEL,
    INCEPTION_LABEL,
    find_inception_weights,
    resolve_inception_weights,
)

log = logging.getLogger(__name__)

DEFAULT_N = 10_000
# What each metric's numbers are computed on (pr says itself: Inception or the labelled fallback).
FEATURE_SPACES = {
    "swd": "laplacian-pyramid 7x7 patches (pixels)",
    "fid": f"{INCEPTION_LABEL} (pt_inception-2015-12-05)",
    "kid": f"{INCEPTION_LABEL} (pt_inception-2015-12-05)",
    "nn": "pixels32 (nearest training image)",
    "attrs": ATTRS_LABEL,
}
# keys of the pr metric besides precision/recall; every key with a `<key>_real` twin is shown next to it
PR_KEYS = ("precision", "recall", "pr_n")


@dataclass(frozen=True)
class EvalReport:
    """One evaluation: where the images came from, how many, and the metric values."""

    source: str  # checkpoint dir or generator file
    step: int | None
    data: str
    resolution: int
    n_real: int
    n_fake: int
    seed: int
    metrics: dict[str, float | str]
    feature_spaces: dict[str, str]
    seconds: float
    json_path: str | None = None
    extras: dict[str, str] = field(default_factory=dict)  # files written besides the JSON (nearest_pairs.png)

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return asdict(self)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC with 1 or 3 channels -> 3 channels (the metrics compare RGB)."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else np.ascontiguousarray(images)


def sample_generator(gen: LoadedGenerator, n: int, seed: int = 0) -> np.ndarray:
    """n uint8 RGB images from seeds seed..seed+n-1 (as `ganime generate --seed`), classes cycling if conditional."""
    labels = torch.arange(n) % gen.model.num_classes if gen.model.num_classes else None
    return to_rgb(gen.from_seeds(list(range(seed, seed + n)), 1.0, labels))


def real_subset(images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n images picked without replacement by a seeded generator (all of them if the set is smaller), as RGB."""
    return real_subsets(images, n, seed)[0]


def real_subsets(images: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """`real_subset`, and n more real images disjoint from it (None where the set holds fewer than 2n): the other
    side of the real-vs-real floor of the swd metric, at the same count as the generated images."""
    if len(images) <= n:
        return to_rgb(np.asarray(images)), None
    idx = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    rest = np.setdiff1d(np.arange(len(images)), idx)
    other = None
    if len(rest) >= n:
        other = to_rgb(np.asarray(images[np.sort(np.random.default_rng((seed, 1)).choice(rest, n, replace=False))]))
    return to_rgb(np.asarray(images[idx])), other


def real_stats_cache(real: np.ndarray) -> dict[str, Path | str]:
    """`compute` arguments that cache the real set's Inception statistics in $GANIME_CACHE/stats, keyed by the
    content, count and size of exactly these images."""
    real_key = hashlib.sha1(real.tobytes()).hexdigest()[:16] + f"-n{len(real)}-{real.shape[1]}px"
    return {"cache_dir": cache_root() / "stats", "real_key": real_key}


def _source_info(source: str | Path) -> tuple[Path | None, dict]:
    """(checkpoint dir or None, its config dict or the generator file's sidecar)."""
    p = Path(source).expanduser()
    if str(source) == PRETRAINED and not p.exists():
        return None, {}
    if p.suffix == ".safetensors":
        try:
            return None, json.loads(p.with_suffix(".json").read_text())
        except (OSError, ValueError):  # no or unreadable sidecar: the shipped data set is the default
            return None, {}
    ckpt = resolve_checkpoint(p)
    return ckpt, read_state(ckpt)["config"]


def default_report_path(source: str | Path, ckpt: Path | None) -> Path:
    """RUN/eval/<ckpt-name>.json for checkpoints; DIR/eval/<stem>.json for generator files; for the shipped
    generator (whose folder may be read-only) $GANIME_CACHE/eval/, else ~/.cache/ganime/eval/."""
    if ckpt is not None:
        return ckpt.parent / "eval" / f"{ckpt.name}.json"
    p = Path(source).expanduser()
    if p.suffix == ".safetensors":
        return p.parent / "eval" / f"{p.stem}.json"
    return cache_root() / "eval" / f"{p.name}.json"


def evaluate(
    source: str | Path,
    data: str | Path | None = None,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    n: int = DEFAULT_N,
    *,
    seed: int = 0,
    inception_weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    out: str | Path | None = None,
    write: bool = True,
) -> EvalReport:
    """Sample `n` images from a run, checkpoint or generator file and compare them with `n` real images.

    Args:
        source: run dir (its latest checkpoint), ckpt-* dir, generator .safetensors, or "pretrained".
        data: the real images; default the data the run was trained on (its config), else the shipped set.
        metrics: names or a comma-separated string: swd, fid, kid, pr, nn (alias memorization), attrs (faces).
        n: generated images, and real images (fewer if the data set is smaller: the report says how many).
        seed: generated images use seeds seed..seed+n-1; the same seed picks the real subset and the metrics'
            random draws, so a report can be reproduced exactly.
        inception_weights: pt_inception-2015-12-05-6726825d.pth for fid/kid (and pr); see docs/metrics.md.
        out: JSON path (default RUN/eval/<ckpt>.json); write=False writes nothing.
    """
    names = parse_names(metrics)
    if n < 2:
        raise ConfigError("--n must be at least 2 (use thousands for stable numbers; 50,000 for paper FID)")
    # Missing Inception weights fail here, before minutes of sampling; an explicit path must exist even for pr.
    if {"fid", "kid"} & set(names):
        resolve_inception_weights(inception_weights)
    elif "pr" in names:
        find_inception_weights(inception_weights)
    start = time.perf_counter()
    gen = load_generator(source, device=device)  # first: its errors say what is wrong with `source`
    # the checkpoint the generator came from (a run in training may have saved a newer one meanwhile)
    ckpt, info = _source_info(gen.source if (Path(gen.source) / STATE_FILE).is_file() else source)
    data_cfg = TrainConfig.from_dict({"data": info["data"]}).data if "data" in info else DataConfig()
    data_path = str(data) if data is not None else data_cfg.path
    if "attrs" in names:  # before minutes of sampling
        check_faces_source(resolve_source(data_path or None), gen.resolution)
    dataset = load_dataset(
        data_path or None, gen.resolution, gen.model.channels, data_cfg.background, data_cfg.cache_dir or None
    )
    if len(dataset) < 2:
        raise DataError(f"{dataset.source} holds {len(dataset)} image(s); evaluation needs at least 2")
    real, other = real_subsets(dataset.images, n, seed)
    if len(real) < n:
        log.warning("the data set has %d images: comparing %d generated images with all of them", len(real), n)
    log.info("sampling %d images from %s", n, gen.source)
    fake = sample_generator(gen, n, seed)
    report_path = Path(out) if out is not None else default_report_path(source, ckpt)
    extras_dir = report_path.with_suffix("") if write else None  # RUN/eval/<ckpt>/nearest_pairs.png
    values = compute(
        names,
        real,
        fake,
        seed=seed,
        inception_weights=inception_weights,
        **real_stats_cache(real),
        real_other=other if other is not None and len(other) == len(fake) else None,
        out_dir=extras_dir,
        device=device,
    )
    spaces = {name: FEATURE_SPACES.get(name, "") for name in names}
    if "pr" in names:
        label = str(values.get("pr_features", ""))
        spaces["pr"] = (
            f"{label} (weights-free fallback, not comparable to papers)" if label == FALLBACK_LABEL else label
        )
    extras = {}
    if extras_dir is not None and (extras_dir / "nearest_pairs.png").is_file():
        extras["nearest_pairs"] = str(extras_dir / "nearest_pairs.png")
    report = EvalReport(
        source=gen.source,
        step=gen.meta.get("step"),
        data=dataset.source,
        resolution=gen.resolution,
        n_real=len(real),
        n_fake=len(fake),
        seed=seed,
        metrics=values,
        feature_spaces=spaces,
        seconds=round(time.perf_counter() - start, 2),
        json_path=str(report_path) if write else None,
        extras=extras,
    )
    if write:
        try:
            atomic_write_json(report_path, report.to_dict())
        except OSError as e:  # a read-only or full folder: one line from the CLI
            raise ConfigError(f"cannot write the report {report_path}: {e.strerror or e}") from None
        log.info("wrote %s", report_path)
    return report


def format_table(report: EvalReport) -> str:
    """The report as a small text table: metric, value, feature space."""
    lines = [
        f"source: {report.source} (step {report.step})",
        f"data:   {report.data}",
        f"images: {report.n_fake} generated vs {report.n_real} real at {report.resolution} px, seed {report.seed}",
        "",
        f"{'metric':22s} {'value':>12s} {'real vs real':>12s}  feature space",
    ]
    values = report.metrics
    for key, value in values.items():
        if isinstance(value, str) or (key.endswith("_real") and key[: -len("_real")] in values):
            continue
        floor = values.get(f"{key}_real")
        shown_floor = _number(floor) if isinstance(floor, float | int) else f"{'':12s}"
        lines.append(f"{key:22s} {_number(value)} {shown_floor}  {report.feature_spaces.get(_family(key), '')}")
    if any(f"{k}_real" in values for k in values):
        lines += ["", "real vs real: a held-back half of the real images scored like the generated ones (same count)"]
    if report.json_path:
        lines += ["", f"json:   {report.json_path}"]
    lines += [f"{name + ':':8s} {path}" for name, path in report.extras.items()]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:12.4f}" if abs(value) < 1e4 else f"{value:12.4g}"


def _family(key: str) -> str:
    """The metric name a result key belongs to: swd_32 -> swd, recall -> pr, fcd -> attrs, nn_ratio_median -> nn."""
    if key in PR_KEYS:
        return "pr"
    if key == "fcd":
        return "attrs"
    return key.split("_")[0]
