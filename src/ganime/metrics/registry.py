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
    _inception: tuple[features.FeatureStats, features.FeatureStats] | None = field(default=None, repr=False)

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
