"""Metric registry: each metric is a function of a `MetricContext`, registered by name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganime.metrics import features

log = logging.getLogger(__name__)

MetricResult = dict[str, float | str]
MetricFn = Callable[["MetricContext"], MetricResult]

METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator that adds a metric function to `METRICS` under `name`."""

    def add(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = fn
        return fn

    return add


@dataclass(frozen=True)
class Halves:
    """Index sets for floors: fakes and held-back reals are both compared with the same reference half."""

    reference: np.ndarray  # real images the others are compared with
    real: np.ndarray  # the other real images, as many as `fake`
    fake: np.ndarray  # generated images, as many as `real`


def split_halves(n_real: int, n_fake: int, seed: int = 0) -> Halves:
    """Split the reals in two halves, A (reference) and B; B and the fakes are cut to the same count m.

    Every metric that reports a floor compares fake-vs-A and B-vs-A at the same sizes: k-NN radii, mode
    counts and Frechet biases all depend on the counts, so only equal counts make the two numbers comparable.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_real)
    half = n_real // 2
    m = min(n_real - half, n_fake)
    fake = np.sort(rng.choice(n_fake, m, replace=False)) if m < n_fake else np.arange(n_fake)
    return Halves(np.sort(perm[:half]), np.sort(perm[half : half + m]), fake)


@dataclass
class MetricContext:
    """Inputs shared by the metrics of one `compute()` call; Inception features are extracted once, lazily."""

    real: np.ndarray  # (N, H, W, 3) uint8
    fake: np.ndarray  # (M, H, W, 3) uint8
    seed: int = 0
    inception_weights: str | Path | None = None
    cache_dir: str | Path | None = None
    real_key: str | None = None
    out_dir: str | Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    real_other: np.ndarray | None = None  # more reals, disjoint from `real`, as many as `fake` (swd's floor)
    _inception: tuple[features.FeatureStats, features.FeatureStats] | None = field(default=None, repr=False)
    _halves: Halves | None = field(default=None, repr=False)

    def halves(self) -> Halves:
        """The seeded split every real-vs-real floor uses (`split_halves`), drawn once per call."""
        if self._halves is None:
            self._halves = split_halves(len(self.real), len(self.fake), self.seed)
        return self._halves

    def inception(self) -> tuple[features.FeatureStats, features.FeatureStats]:
        """Inception pool3 statistics of (real, fake); the real ones come from the cache when possible."""
        if self._inception is None:
            self._inception = features.inception_stats(
                self.real,
                self.fake,
                weights=self.inception_weights,
                device=self.device,
                cache_dir=self.cache_dir,
                real_key=self.real_key,
            )
        return self._inception

    def has_inception_weights(self) -> bool:
        """Whether Inception weights can be found (argument, env var or default path)."""
        return features.find_inception_weights(self.inception_weights) is not None
