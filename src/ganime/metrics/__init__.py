"""Image-set metrics by name: swd (default, weights-free), fid, kid, pr, nn, attrs (faces), border; see docs/metrics.md."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ganime.errors import ConfigError
from ganime.metrics import attributes, background, fid, kid, memorization, prdc, swd  # noqa: F401  (imports register)
from ganime.metrics.features import check_pair
from ganime.metrics.registry import METRICS, MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)

__all__ = ["METRICS", "available_metrics", "compute", "parse_names", "register_metric"]

DEFAULT_METRICS = ("swd",)
ALIASES = {"memorization": "nn", "prdc": "pr"}  # longer names accepted on the command line


def available_metrics() -> list[str]:
    """Names accepted by `compute`."""
    return sorted(METRICS)


def parse_names(names: str | Sequence[str]) -> list[str]:
    """Metric names from a list or a comma-separated string, aliases resolved, checked against the registry."""
    parsed = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names)]
    parsed = [ALIASES.get(n, n) for n in parsed]
    parsed = list(dict.fromkeys(n for n in parsed if n))  # drop blanks and repeats, keep order
    unknown = [n for n in parsed if n not in METRICS]
    if unknown or not parsed:
        raise ConfigError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; available: {', '.join(available_metrics())} (memorization = nn)"
        )
    return parsed


def compute(
    names: str | Sequence[str],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    seed: int = 0,
    inception_weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    real_key: str | None = None,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    real_other: np.ndarray | None = None,
) -> MetricResult:
    """Run the named metrics on uint8 (N, H, W, 3) image sets and return one flat dict.

    Args:
        names: metric names ("swd", "fid", "kid", "pr", "nn", "attrs") or a comma-separated string.
        real: training/reference images; fake: generated images (the counts may differ).
        seed: seeds every random choice (patches, directions, subsets).
        inception_weights: path to pt_inception-2015-12-05-6726825d.pth (else $GANIME_INCEPTION_WEIGHTS,
            else ~/.cache/ganime/); needed by fid and kid, optional for pr.
        cache_dir, real_key: cache the real set's Inception statistics as cache_dir/...<real_key>...npz.
        out_dir: where the nn metric writes nearest_pairs.png.
        device: device for the Inception network.
        real_other: more real images, disjoint from `real`, as many as `fake`: swd's floor (`swd_real`) compares
            them with `real`; without them it compares two halves of `real`.
    """
    selected = parse_names(names)
    check_pair(real, fake)
    ctx = MetricContext(
        real=real,
        fake=fake,
        seed=seed,
        inception_weights=inception_weights,
        cache_dir=cache_dir,
        real_key=real_key,
        out_dir=out_dir,
        device=torch.device(device),
        real_other=real_other,
    )
    results: MetricResult = {}
    for name in selected:
        start = time.perf_counter()
        results.update(METRICS[name](ctx))
        log.info("metric %s done in %.1f s", name, time.perf_counter() - start)
    return results
