"""Divergence guard: catch non-finite losses/gradients before they are applied, roll back, lower the lr, give up.

A GAN that hits NaN keeps "training" on garbage for hours; one that collapses (D wins outright) stops learning.
`Guard` sits between the loop and the Trainer (training/trainer.py):

- The Trainer, built with `step_check(max_rollbacks)`, calls `check_finite` after each backward and before each
  optimizer step; a non-finite loss or gradient raises `_NonFinite`, so that update is never applied.
- `train_step` then restores the last good state (an in-memory copy taken at start and at every successful
  checkpoint, identical to that checkpoint), multiplies both learning rates by `lr_factor` and goes on; after
  `max_rollbacks` rollbacks to the same checkpoint it raises `TrainingDiverged` (the good checkpoint stays).
- It warns once when D's loss and D(G(z)) both stay near 0 for `collapse_window` steps (mode collapse / D wins).
- `save` applies the run's policy for failed checkpoint writes (disk full): stop with the error, or warn and
  continue with the previous checkpoint kept.

The checks only read tensors (no RNG draws), so a guarded run and its resume stay bit-exact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import torch
from torch import Tensor, nn

from ganime.errors import CheckpointError, ConfigError, GanimeError
from ganime.training import distributed

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a Trainer calls after each backward and before its optimizer step with (what, loss, module, scaler);
# raising stops that update from being applied.
StepCheck = Callable[[str, Tensor, nn.Module, torch.amp.GradScaler], None]

SAVE_ERROR_POLICIES = ("stop", "continue")
COLLAPSE_LOSS_D, COLLAPSE_D_FAKE = 0.01, 0.01  # D loss and D(G(z)) below these = D rejects every fake


class TrainingDiverged(GanimeError):
    """Training kept producing non-finite values after every rollback."""


class _NonFinite(Exception):
    """Raised inside a train step, before the optimizer step, when a loss or gradient is NaN/inf."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def check_finite(what: str, loss: Tensor, module: nn.Module, scaler: torch.amp.GradScaler) -> None:
    """Raise `_NonFinite` if `loss` or (unscaled runs) any gradient of `module` is NaN/inf."""
    vals = [loss.detach().float().reshape(())]
    if not scaler.is_enabled():  # fp16 loss scaling skips inf-gradient steps itself, by design
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            vals.append(torch.stack(torch._foreach_norm(grads)).float().sum())
    # one device sync per check; under torchrun every rank skips the update if any rank saw NaN/inf
    if not distributed.all_true(torch.isfinite(torch.stack(vals)).all()):
        raise _NonFinite(f"{what} loss or gradients")


def step_check(max_rollbacks: int) -> StepCheck | None:
    """The check a Trainer runs before each update under a Guard with `max_rollbacks`: None when it is off."""
    return check_finite if max_rollbacks > 0 else None


class Guarded(Protocol):
    """What a Guard uses of the trainer it watches (training/trainer.py's Trainer)."""

    device: torch.device

    @property
    def step(self) -> int: ...

    def train_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor]: ...

    def save(self) -> Path: ...

    def snapshot(self) -> dict: ...

    def restore_snapshot(self, snap: dict) -> None: ...

    def scale_lr(self, factor: float) -> tuple[float, float]: ...


class Guard:
    """Watches a Trainer's steps and checkpoints (see the module docstring).

    Build the trainer with `step_check(max_rollbacks)`, so that its non-finite updates raise before they apply.
    `last_checkpoint` is what a run ends on when all its saves fail (on-save-error continue): the resumed one.
    """

    def __init__(
        self,
        trainer: Guarded,
        max_rollbacks: int = 3,
        on_save_error: str = "stop",
        lr_factor: float = 0.5,
        collapse_window: int = 500,
        last_checkpoint: Path | None = None,
    ) -> None:
        if max_rollbacks < 0:
            raise ConfigError("max rollbacks must be 0 (guard off) or more")
        if on_save_error not in SAVE_ERROR_POLICIES:
            raise ConfigError(f"on-save-error {on_save_error!r} unknown; use {' or '.join(SAVE_ERROR_POLICIES)}")
        self.trainer = trainer
        self.enabled = max_rollbacks > 0
        self.max_rollbacks, self.on_save_error = max_rollbacks, on_save_error
        self.lr_factor, self.collapse_window = lr_factor, collapse_window
        self.rollbacks = 0  # consecutive rollbacks to the current good state
        self.total_rollbacks = 0
        self.collapsed_steps = 0
        self.collapse_warned = False
        self.last_checkpoint = last_checkpoint
        self._good: dict | None = None
        self._good_step = -1
        if self.enabled:
            self._remember()

    # --- called from the training loop --------------------------------------------------------------------
    def train_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor] | None:
        """One guarded `Trainer.train_step`: its stats, or None when it diverged and was rolled back."""
        if not self.enabled:
            return self.trainer.train_step(real, labels)
        try:
            stats = self.trainer.train_step(real, labels)
        except _NonFinite as e:
            self._rollback(e.what)
            return None
        self._watch_collapse(stats)
        return stats

    def save(self) -> Path | None:
        """Trainer.save under the save-error policy; a successful save becomes the new rollback point."""
        try:
            path: Path | None = self.trainer.save()
        except CheckpointError as e:
            if self.on_save_error == "stop":
                raise
            log.warning("%s; training continues (on-save-error=continue)", e)
            path = None
        # under torchrun only rank 0 writes: every rank must agree whether this is a new rollback point, or a
        # later rollback would send the ranks to different states
        if not distributed.all_true(torch.tensor(path is not None, device=self.trainer.device)):
            return None
        self.last_checkpoint = path
        if self.enabled:
            self._remember()
        return path

    def try_write(self, what: str, write: Callable[..., T], *args: object) -> T | None:
        """A side output (grid, plot, metrics row): a full disk or I/O error warns, never ends the run."""
        try:
            return write(*args)
        except OSError as e:
            log.warning("could not write %s (%s); training continues", what, e.strerror or e)
            return None

    # --- internals -----------------------------------------------------------------------------------------
    def _remember(self) -> None:
        t = self.trainer
        if self._good is not None and self._good_step == t.step:
            return
        self._good = t.snapshot()
        if t.step > self._good_step:
            self.rollbacks = 0  # progress past the last rollback point
        self._good_step = t.step

    def _rollback(self, what: str) -> None:
        t = self.trainer
        bad_step = t.step + 1
        self.rollbacks += 1
        self.total_rollbacks += 1
        assert self._good is not None
        t.restore_snapshot(self._good)
        where = f"the checkpoint {self.last_checkpoint}" if self.last_checkpoint else "the start of this session"
        if self.rollbacks > self.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: non-finite {what} at step {bad_step} again after {self.max_rollbacks} "
                f"rollbacks with lower learning rates; the last good state (step {t.step}) is {where}. "
                "Try a lower --lr, a smaller batch, fp32 precision, or R1 / spectral norm"
            )
        lrs = t.scale_lr(self.lr_factor)
        log.warning(
            "non-finite %s at step %d: step not applied; rolled back to step %d (%s), lr G %.3g D %.3g "
            "(rollback %d of %d)",
            what, bad_step, t.step, where, lrs[0], lrs[1], self.rollbacks, self.max_rollbacks,
        )

    def _watch_collapse(self, stats: dict[str, Tensor]) -> None:
        loss_d, d_fake = torch.stack([stats["loss_d"].float(), stats["d_fake"].float()]).tolist()
        self.observe(loss_d, d_fake)

    def observe(self, loss_d: float, d_fake: float) -> None:
        """Count steps with the collapse signature (D loss -> 0 and D(G(z)) -> 0); warn once per episode."""
        if math.isfinite(loss_d) and loss_d < COLLAPSE_LOSS_D and d_fake < COLLAPSE_D_FAKE:
            self.collapsed_steps += 1
        else:
            self.collapsed_steps = 0
            self.collapse_warned = False
        if self.collapsed_steps >= self.collapse_window and not self.collapse_warned:
            self.collapse_warned = True
            log.warning(
                "possible collapse at step %d: D loss < %g and D(G(z)) < %g for %d steps (D rejects every "
                "fake; G gets no useful gradient). Try DiffAugment, R1, D dropout or a lower D lr",
                self.trainer.step, COLLAPSE_LOSS_D, COLLAPSE_D_FAKE, self.collapsed_steps,
            )
