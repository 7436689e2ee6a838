"""Evaluation during training (`--eval-every N` epochs): a metric column in metrics.csv, eval.png, and a
`best` checkpoint that follows the metric.

The real subset and the latents are fixed for the whole run (drawn once from their own seeded generators),
so successive values differ only because G changed, and the training RNG streams are never touched: a
resumed run stays bit-exact with or without evaluation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ganime.checkpoint import atomic_write_json
from ganime.config import TrainConfig
from ganime.eval_report import real_stats_cache, real_subset, to_rgb
from ganime.generate import to_uint8
from ganime.metrics import compute
from ganime.metrics.features import resolve_inception_weights
from ganime.training.report import MetricsLog, save_figure

log = logging.getLogger(__name__)

BEST_FILE, BEST_DIR, PLOT_FILE = "best.json", "best", "eval.png"
EVAL_SEED_OFFSET = 7  # seed + 1..4 are the training streams (trainer.py); evaluation draws from its own


class TrainingEval:
    """Measures the sampling generator (G_ema if kept) every few epochs and keeps the best checkpoint."""

    def __init__(self, cfg: TrainConfig, images: np.ndarray, run_dir: Path, device: torch.device) -> None:
        self.metric, self.every, self.run_dir, self.device = cfg.eval_metric, cfg.eval_every, Path(run_dir), device
        self.seed = cfg.seed + EVAL_SEED_OFFSET
        n = cfg.eval_n
        self.real = real_subset(images, n, self.seed)
        self.stats_cache = real_stats_cache(self.real)  # fid/kid: the real statistics once per run
        gen = torch.Generator().manual_seed(self.seed)
        self.z = torch.randn(n, cfg.model.z_dim, generator=gen)
        classes = cfg.model.num_classes
        self.labels = torch.arange(n) % classes if classes else None
        self.best = read_best(self.run_dir)
        if self.metric in ("fid", "kid"):
            resolve_inception_weights()  # fail now, not after the first epoch, if the weights are missing

    def due(self, epoch: int) -> bool:
        """Whether to evaluate at the end of `epoch` (1-based count of finished epochs)."""
        return self.every > 0 and epoch > 0 and epoch % self.every == 0

    @torch.no_grad()
    def fake_images(self, G: torch.nn.Module, batch_size: int = 256) -> np.ndarray:
        """The fixed latents through G in eval mode, as uint8 RGB."""
        was_training = G.training
        G.eval()
        out = []
        for i in range(0, len(self.z), batch_size):
            z = self.z[i : i + batch_size].to(self.device)
            labels = self.labels[i : i + batch_size].to(self.device) if self.labels is not None else None
            out.append(to_uint8(G(z, labels) if labels is not None else G(z)))
        G.train(was_training)
        return to_rgb(np.concatenate(out))

    def run(self, G: torch.nn.Module, row: dict, metrics: MetricsLog, checkpoint: Path | None) -> dict:
        """Evaluate G, append `row` + the values to metrics.csv, update best/ and eval.png; returns the values."""
        values = compute([self.metric], self.real, self.fake_images(G), seed=self.seed, **self.stats_cache)
        numbers = {k: v for k, v in values.items() if isinstance(v, float)}
        metrics.append({**row, **numbers})
        value = numbers[self.metric]
        log.info("eval at step %d: %s = %.4f (%d images)", row["step"], self.metric, value, len(self.z))
        # swd, fid and kid (config.validate's choices) are all lower-is-better
        improved = self.best is None or self.best.get("metric") != self.metric or value < self.best["value"]
        if improved and checkpoint is not None:
            self.best = keep_best(self.run_dir, checkpoint, self.metric, value, row)
        plot_eval(self.run_dir, self.metric, self.best)
        return numbers


def read_best(run_dir: Path) -> dict | None:
    """best.json of a run, or None."""
    try:
        best = json.loads((Path(run_dir) / BEST_FILE).read_text())
        return best if isinstance(best, dict) and "value" in best else None
    except (OSError, ValueError):
        return None


def keep_best(run_dir: Path, checkpoint: Path, metric: str, value: float, row: dict) -> dict:
    """Copy `checkpoint` to RUN/best/ (hard links, so no extra disk) and record it in RUN/best.json.

    best/ is not a ckpt-* dir, so pruning never deletes it; `ganime generate RUN/best` and
    `ganime eval RUN/best` load it like any checkpoint. Replaced atomically: a kill leaves the old one.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / f".tmp-{BEST_DIR}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, copy_function=_link_or_copy)
    final, old = run_dir / BEST_DIR, run_dir / f".old-{BEST_DIR}-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    best = {
        "checkpoint": checkpoint.name,
        "path": BEST_DIR,
        "step": int(row["step"]),
        "epoch": row.get("epoch"),
        "metric": metric,
        "value": value,
    }
    atomic_write_json(run_dir / BEST_FILE, best)
    return best


def _link_or_copy(src: str, dst: str) -> None:
    # checkpoint files are written once and replaced, never modified in place, so a hard link is safe
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def plot_eval(run_dir: Path, metric: str, best: dict | None) -> Path | None:
    """eval.png: the metric against the training step, the best checkpoint marked."""
    rows = [r for r in MetricsLog(Path(run_dir) / "metrics.csv").rows() if r.get(metric)]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [float(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(steps, [float(r[metric]) for r in rows], marker="o", label=metric)
    if best is not None and best.get("metric") == metric:
        ax.scatter([best["step"]], [best["value"]], s=120, facecolors="none", edgecolors="red", label="best")
    ax.set_title(f"{metric} of generated vs real images (lower is better)")
    ax.set_xlabel("iteration")
    ax.legend()
    return save_figure(fig, Path(run_dir) / PLOT_FILE)
