"""The Trainer: G, D, their optimizers and EMA, one train step, sample grids, checkpoints and exact restore.

`training/loop.py` drives it (budgets, logging, stop signals); `training/guard.py` wraps its steps and saves;
under torchrun it is one rank's part of the job (`training/distributed.py`). The RNG streams: the global torch
RNG (initial weights, dropout), seed + 1 latents, seed + 2 the grid's fixed latents, seed + 3 DiffAugment,
seed + 4 the BatchNorm refresh of G_ema.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganime.augment import AdaptiveP, diff_augment, parse_policy
from ganime.config import TrainConfig
from ganime.data.dataset import ImageDataset
from ganime.data.loader import BatchLoader
from ganime.errors import ConfigError
from ganime.generate import to_uint8
from ganime.io import make_grid, save_png
from ganime.losses import get_loss, grad_penalty
from ganime.models import build_discriminator, build_generator
from ganime.models.grown import at_depth
from ganime.training import trainer_state
from ganime.training.distributed import DistEnv, convert_sync_batchnorm, wrap_ddp
from ganime.training.ema import ema_beta_at, ema_update, refresh_bn_stats
from ganime.training.grow import grow_from
from ganime.training.growth import depth_at, lr_ramp, scaled_lr
from ganime.training.guard import StepCheck
from ganime.training.precision import Runtime

log = logging.getLogger(__name__)

class Trainer:
    """Owns G, D, their optimizers and the loop position; `loop.train()` drives it."""

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: ImageDataset,
        device: torch.device,
        run_dir: Path,
        runtime: Runtime | None = None,
        *,
        dist_env: DistEnv | None = None,
        step_check: StepCheck | None = None,
    ) -> None:
        """Build the nets, optimizers and RNG streams of `cfg` (initial weights from `cfg.seed`).

        Args:
            runtime: precision and layout (training/autotune.py); None = the config's, `auto` read as fp32.
            dist_env: this process's place in a torchrun job (distributed.py); None = one process on `device`.
            step_check: run before each optimizer step (training/guard.py); None = no check.
        """
        env = dist_env if dist_env is not None else DistEnv(device=device)
        self.cfg, self.device, self.run_dir = cfg, device, run_dir
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.is_main
        self.runtime = runtime if runtime is not None else fixed_runtime(cfg)
        if env.distributed and self.runtime.compile:
            # the compile fallback below swaps in the bare modules, which would silently drop DDP's gradient sync
            if env.is_main:
                log.warning("torch.compile is not used under torchrun (DDP): running eager")
            self.runtime = dataclasses.replace(self.runtime, compile=False)
        if cfg.growth.start and self.runtime.compile:
            # each stage trains other modules; compiling them one by one is not worth a CPU run's minutes
            log.warning("torch.compile is not used with a growth schedule: running eager")
            self.runtime = dataclasses.replace(self.runtime, compile=False)
        self.step_check = step_check
        _check(cfg, dataset)
        m = cfg.model
        self.conditional = bool(m.num_classes)
        self.classes = list(dataset.classes) if m.num_classes else []  # label index -> name, saved with G
        self.augment_policy = parse_policy(cfg.loss.diffaugment)
        lc = cfg.loss
        self.ada = AdaptiveP(lc.ada_target, lc.ada_kimg, lc.ada_interval) if lc.ada_target > 0 else None
        torch.manual_seed(cfg.seed)  # initial weights and dropout draw from the global CPU RNG
        fmt = self.runtime.memory_format
        self.G = build_generator(m).to(device, memory_format=fmt)
        self.D = build_discriminator(m).to(device, memory_format=fmt)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.loss.ema_beta > 0 else None
        self._bn_refreshed_at = -1
        o = cfg.optim
        # foreach: one multi-tensor kernel per Adam update instead of a Python loop over parameters
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas_g, foreach=True)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas_d, foreach=True)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
        fp16 = self.runtime.precision == "fp16"
        self.scaler_G = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(device.type, enabled=fp16)
        self.loss = get_loss(cfg.loss.loss)
        # under torchrun each rank takes its slice of every global batch
        self.loader = BatchLoader(
            dataset, cfg.batch_size, cfg.seed, rank=env.rank, world_size=env.world_size, device=device,
            hflip=cfg.data.hflip,
        )
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # latents of the train steps
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)  # DiffAugment draws
        g = torch.Generator().manual_seed(cfg.seed + 2)
        self.fixed_z = torch.randn(cfg.grid_size, m.z_dim, generator=g).to(device)
        self.fixed_labels = (
            (torch.arange(cfg.grid_size) % len(dataset.classes)).to(device) if m.num_classes else None
        )
        self.step = self.epoch = self.step_in_epoch = 0
        self.images_seen = 0
        self.seconds = 0.0  # training time summed over sessions
        self._G_run, self._D_run = self.G, self.D  # what the step calls (compiled modules when compiling)
        self._compile_pending = False
        if self.runtime.compile:
            self._G_run, self._D_run = torch.compile(self.G), torch.compile(self.D)
            self._compile_pending = True  # compilation happens (and may fail) in the first step
        self._env = env
        self.depth: int | None = None  # growth: blocks below the full network that this step trains (0 = all)
        self._forced_depth: int | None = None
        if env.distributed:
            if cfg.sync_bn:  # after the EMA copy: G_ema keeps plain BatchNorm for rank 0's sampling
                convert_sync_batchnorm(self.G, device)
                convert_sync_batchnorm(self.D, device)
            # DDP wraps the modules the step calls; G/D stay bare, so checkpoints keep their plain keys
            self._G_run, self._D_run = wrap_ddp(self.G, env), wrap_ddp(self.D, env)

    # --- one iteration -----------------------------------------------------------------------------------
    def train_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """One D step then one G step on the same fake batch (pytorch/examples dcgan order).

        Returns detached 0-d tensors (no device sync here; call `.item()` when logging).
        """
        if self._compile_pending:
            return self._first_compiled_step(real, labels)
        cfg, lc = self.cfg, self.cfg.loss
        labels = labels if self.conditional else None
        if cfg.growth.start and self._set_depth():  # an early stage: the reals at its size
            real = F.avg_pool2d(real, 2**self.depth)
        real = real.contiguous(memory_format=self.runtime.memory_format)
        n = real.shape[0]
        # every rank draws the global batch's latents and keeps its slice: the 1-process latents (distributed.py)
        z = torch.randn(n * self.world_size, cfg.model.z_dim, generator=self.gen, device=self.device)
        z = z[self.rank * n : (self.rank + 1) * n]
        autocast = self.runtime.autocast(self.device)
        with autocast:
            fake = self._G_run(z, labels) if labels is not None else self._G_run(z)

        # D: maximise log D(x) + log(1 - D(G(z))); the fake batch is detached so G gets no D gradient
        self.opt_D.zero_grad(set_to_none=True)
        lazy_step = self.step % lc.r1_every == 0
        do_r1, do_r2 = lc.r1_gamma > 0 and lazy_step, lc.r2_gamma > 0 and lazy_step
        if do_r1:
            real = real.detach().requires_grad_(True)
        fake_d = fake.detach().requires_grad_(True) if do_r2 else fake.detach()
        with autocast:
            real_logits = self._d(self._augment(real), labels).float()
            fake_logits = self._d(self._augment(fake_d), labels).float()
            loss_d = self.loss.d(real_logits, fake_logits)
            # lazy regularisation: every k steps with weight k (StyleGAN2, Karras et al. 2020, sec. 3.1);
            # the gradient flows back through the (differentiable) augmentation to the images
            if do_r1:
                loss_d = loss_d + (lc.r1_gamma / 2) * lc.r1_every * grad_penalty(real_logits, real)
            if do_r2:
                loss_d = loss_d + (lc.r2_gamma / 2) * lc.r1_every * grad_penalty(fake_logits, fake_d)
        self.scaler_D.scale(loss_d).backward()
        if self.step_check is not None:
            self.step_check("D", loss_d, self.D, self.scaler_D)
        ramp = lr_ramp(cfg, self.images_seen) if cfg.growth.lr_rampup else 1.0
        with scaled_lr(self.opt_D, ramp):
            self.scaler_D.step(self.opt_D)
        self.scaler_D.update()

        # G: maximise log D(G(z)), reusing the same fake batch through the updated D. D's weights need no
        # gradient here (the next D step discards it), so freezing them skips a third of D's backward.
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        try:
            with autocast:
                fake_logits_g = self._d(self._augment(fake), labels).float()
                if self.loss.paired:  # relativistic: each fake against its real, through the updated D
                    with torch.no_grad():
                        real_logits_g = self._d(self._augment(real.detach()), labels).float()
                    loss_g = self.loss.g(fake_logits_g, real_logits_g)
                else:
                    loss_g = self.loss.g(fake_logits_g)
            self.scaler_G.scale(loss_g).backward()
        finally:
            self.D.requires_grad_(True)
        if self.step_check is not None:
            self.step_check("G", loss_g, self.G, self.scaler_G)
        with scaled_lr(self.opt_G, ramp):
            self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, ema_beta_at(lc.ema_beta, lc.ema_rampup, self.step + 1))
        if self.ada is not None:  # after the step: p is constant within one
            self.ada.observe(real_logits)
        with torch.no_grad():
            stats = {
                "loss_d": loss_d.detach(),
                "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(real_logits.detach()).mean(),
                "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
            }
        if self.ada is not None:
            stats["ada_p"] = torch.tensor(self.ada.p)
        return stats

    def _set_depth(self) -> int:
        """Point the step at the stage of the growth schedule (training/growth.py) that is due; returns its depth."""
        depth = self._forced_depth if self._forced_depth is not None else depth_at(self.cfg, self.images_seen)
        if depth != self.depth:
            G, D = at_depth(self.G, depth), at_depth(self.D, depth)
            if self._env.distributed:
                G, D = wrap_ddp(G, self._env), wrap_ddp(D, self._env)
            self._G_run, self._D_run = G, D
            if self.depth is not None and self._forced_depth is None and self.is_main:
                size = self.cfg.model.resolution >> depth
                log.info("growth: training at %d px from %.3g kimg (step %d)", size, self.images_seen / 1000, self.step)
            self.depth = depth
        return depth

    def force_depth(self, depth: int | None) -> None:
        """Train the stage `depth` blocks down whatever the schedule says (speed probes); None = the schedule."""
        self._forced_depth = depth

    def _d(self, x: Tensor, labels: Tensor | None) -> Tensor:
        return self._D_run(x, labels) if labels is not None else self._D_run(x)

    def _augment(self, x: Tensor) -> Tensor:
        if not self.augment_policy:
            return x
        return diff_augment(x, self.augment_policy, self.aug_gen, self.ada.p if self.ada is not None else 1.0)

    def _first_compiled_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """Run the first step compiled; if torch.compile fails, warn once, undo the step and go eager."""
        snapshot = self.snapshot()
        self._compile_pending = False
        try:
            return self.train_step(real, labels)
        except Exception as e:  # noqa: BLE001 - InductorError, BackendCompilerFailed, missing compilers...
            log.warning(
                "torch.compile failed (%s: %s); continuing without it", type(e).__name__, str(e).splitlines()[0][:200]
            )
            self.restore_snapshot(snapshot)
            self._G_run, self._D_run = self.G, self.D
            self.runtime = dataclasses.replace(self.runtime, compile=False)
            return self.train_step(real, labels)

    # --- position and in-memory state -----------------------------------------------------------------------
    @property
    def epoch_finished(self) -> bool:
        """Whether every step of the current epoch has run."""
        return self.step_in_epoch >= self.loader.steps_per_epoch

    def advance(self, seconds: float) -> None:
        """Count one applied train step of `cfg.batch_size` images (the global batch) that took `seconds`."""
        self.seconds += seconds
        self.step += 1
        self.step_in_epoch += 1
        self.images_seen += self.cfg.batch_size

    def next_epoch(self) -> None:
        """Move to the start of the next epoch."""
        self.epoch += 1
        self.step_in_epoch = 0

    def scale_lr(self, factor: float) -> tuple[float, float]:
        """Multiply both learning rates by `factor`; returns the new (G, D) rates."""
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] *= factor
        return self.opt_G.param_groups[0]["lr"], self.opt_D.param_groups[0]["lr"]

    def snapshot(self) -> dict:
        """An in-memory copy of everything a step changes: weights, optimizers, scalers, RNG, position."""
        mods = {"G": self.G, "D": self.D, **({"G_ema": self.G_ema} if self.G_ema is not None else {})}
        return {
            "modules": {k: copy.deepcopy(m.state_dict()) for k, m in mods.items()},
            "opts": [copy.deepcopy(o.state_dict()) for o in (self.opt_G, self.opt_D)],
            "scalers": [s.state_dict() for s in (self.scaler_G, self.scaler_D)],
            "rng": (torch.get_rng_state(), self.gen.get_state(), self.aug_gen.get_state()),
            "position": (self.step, self.epoch, self.step_in_epoch, self.images_seen, self.seconds),
            "ada": self.ada.state() if self.ada is not None else None,
        }

    def restore_snapshot(self, snap: dict) -> None:
        """Go back to the state `snapshot` took."""
        for name, sd in snap["modules"].items():
            getattr(self, name).load_state_dict(sd)
        for opt, sd in zip((self.opt_G, self.opt_D), snap["opts"]):
            opt.load_state_dict(sd)
        for scaler, sd in zip((self.scaler_G, self.scaler_D), snap["scalers"]):
            if sd:
                scaler.load_state_dict(sd)
        torch.set_rng_state(snap["rng"][0])
        self.gen.set_state(snap["rng"][1])
        self.aug_gen.set_state(snap["rng"][2])
        self.step, self.epoch, self.step_in_epoch, self.images_seen, self.seconds = snap["position"]
        if self.ada is not None:
            self.ada.load(snap["ada"])
        self._bn_refreshed_at = -1  # G_ema's statistics are those of the restored weights again

    # --- outputs -----------------------------------------------------------------------------------------
    def sampling_generator(self) -> nn.Module:
        """G_ema (with BatchNorm statistics re-estimated for its own weights) if kept, else G."""
        if self.G_ema is None:
            return self.G
        if self._bn_refreshed_at != self.step:
            refresh_bn_stats(self.G_ema, self.cfg.model.z_dim, self.cfg.seed + 4, self.device)
            self._bn_refreshed_at = self.step
        return self.G_ema

    @torch.no_grad()
    def sample_grid(self, name: str) -> Path:
        """Grid of the fixed latents from G_ema (else G), in eval mode, as samples/<name>.png."""
        if not self.is_main:  # only rank 0 writes
            return self.run_dir / "samples" / f"{name}.png"
        net = self.sampling_generator()
        was_training = net.training
        net.eval()
        imgs = net(self.fixed_z, self.fixed_labels) if self.fixed_labels is not None else net(self.fixed_z)
        net.train(was_training)
        nrow = math.ceil(math.sqrt(len(imgs)))
        return save_png(make_grid(to_uint8(imgs), nrow), self.run_dir / "samples" / f"{name}.png")

    # --- checkpoints -------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Write a complete checkpoint of the current position (training/trainer_state.py)."""
        return trainer_state.save(self)

    def grow(self, ckpt: Path) -> None:
        """Start G, D and G_ema from `ckpt`, a checkpoint at half the resolution (training/grow.py `grow_source`):
        a new run's alternative to `restore`."""
        grow_from(ckpt, {"G": self.G, "D": self.D, "G_ema": self.G_ema})

    def restore(self, ckpt: Path) -> None:
        """Load every piece of state saved by `save`, so the run continues bit for bit."""
        trainer_state.restore(self, ckpt)


def _check(cfg: TrainConfig, dataset: ImageDataset) -> None:
    m, lc = cfg.model, cfg.loss
    if m.num_classes and dataset.labels is None:
        raise ConfigError("this preset is class-conditional but the data set has no labels")
    if m.num_classes and len(dataset.classes) > m.num_classes:
        raise ConfigError(f"the data set has {len(dataset.classes)} classes; the model allows {m.num_classes}")
    if (lc.r1_gamma > 0 or lc.r2_gamma > 0) and lc.r1_every < 1:
        raise ConfigError("loss.r1_every must be at least 1")
    if not 0.0 <= lc.ema_beta < 1.0:
        raise ConfigError("loss.ema_beta must be in [0, 1)")


def fixed_runtime(cfg: TrainConfig) -> Runtime:
    """The runtime a config asks for, with 'auto' read as the safe default (fp32, contiguous)."""
    prec = cfg.precision if cfg.precision != "auto" else "fp32"
    return Runtime(prec, cfg.channels_last == "on", cfg.compile)
