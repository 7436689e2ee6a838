"""The training loop: D and G steps, EMA, logging, sample grids, checkpoints, exact resume, clean stop."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ganime import checkpoint as ckpt_io
from ganime.augment import diff_augment, parse_policy
from ganime.config import TrainConfig, validate
from ganime.data.dataset import ImageDataset, load_dataset
from ganime.data.loader import BatchLoader
from ganime.device import configure_backends, cpu_model, set_threads
from ganime.errors import CheckpointError, ConfigError
from ganime.generate import make_grid, save_png, to_uint8
from ganime.losses import get_loss, grad_penalty
from ganime.models import build_discriminator, build_generator
from ganime.training import distributed, precision
from ganime.training.evaluate import TrainingEval
from ganime.training.guard import Guard
from ganime.training.precision import Runtime
from ganime.training.progress import Progress
from ganime.training.report import MetricsLog, plot_run

log = logging.getLogger(__name__)

# Config sections that define the experiment: resume refuses a checkpoint whose sections differ.
FROZEN_SECTIONS = ("model", "optim", "loss", "data", "batch_size", "seed")
LOG_EVERY = 10
RUNTIME_FILE = "runtime.json"
BN_REFRESH_BATCHES, BN_REFRESH_SIZE = 4, 64  # 256 latents re-estimate G_ema's BatchNorm statistics


@dataclass
class TrainResult:
    """What a finished (or stopped) `train` call did."""

    run_dir: Path
    checkpoint: Path
    step: int
    epoch: int
    images_seen: int
    stopped: str  # "done" | "time" | "signal"
    seconds: float


class Trainer:
    """Owns G, D, their optimizers and the loop position; `train()` below drives it."""

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: ImageDataset,
        device: torch.device,
        run_dir: Path,
        runtime: Runtime | None = None,
    ) -> None:
        self.cfg, self.device, self.run_dir = cfg, device, run_dir
        self.runtime = runtime if runtime is not None else fixed_runtime(cfg)
        m = cfg.model
        if m.num_classes and dataset.labels is None:
            raise ConfigError("this preset is class-conditional but the data set has no labels")
        if m.num_classes and len(dataset.classes) > m.num_classes:
            raise ConfigError(f"the data set has {len(dataset.classes)} classes; the model allows {m.num_classes}")
        self.conditional = bool(m.num_classes)
        self.classes = list(dataset.classes) if m.num_classes else []  # label index -> name, saved with G
        self.augment_policy = parse_policy(cfg.loss.diffaugment)
        if (cfg.loss.r1_gamma > 0 or cfg.loss.r2_gamma > 0) and cfg.loss.r1_every < 1:
            raise ConfigError("loss.r1_every must be at least 1")
        if not 0.0 <= cfg.loss.ema_beta < 1.0:
            raise ConfigError("loss.ema_beta must be in [0, 1)")
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
        self.loader = BatchLoader(dataset, cfg.batch_size, cfg.seed, device=device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # latents of the train steps
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 3)  # DiffAugment draws
        g = torch.Generator().manual_seed(cfg.seed + 2)
        self.fixed_z = torch.randn(cfg.grid_size, m.z_dim, generator=g).to(device)
        self.fixed_labels = (
            (torch.arange(cfg.grid_size) % len(dataset.classes)).to(device) if m.num_classes else None
        )
        self.step = self.epoch = self.step_in_epoch = 0
        self.rank, self.world_size, self.is_main = 0, 1, True  # set by distributed.prepare under torchrun
        self.images_seen = 0
        self.seconds = 0.0  # training time summed over sessions
        self._G_run, self._D_run = self.G, self.D  # what the step calls (compiled modules when compiling)
        self._compile_pending = False
        self.guard: Guard | None = None  # set by Guard(): checks each update before it is applied
        if self.runtime.compile:
            self._G_run, self._D_run = torch.compile(self.G), torch.compile(self.D)
            self._compile_pending = True  # compilation happens (and may fail) in the first step

    # --- one iteration -----------------------------------------------------------------------------------
    def train_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """One D step then one G step on the same fake batch (pytorch/examples dcgan order).

        Returns detached 0-d tensors (no device sync here; call `.item()` when logging).
        """
        if self._compile_pending:
            return self._first_compiled_step(real, labels)
        cfg, lc = self.cfg, self.cfg.loss
        labels = labels if self.conditional else None
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
        if self.guard is not None:
            self.guard.check("D", loss_d, self.D, self.scaler_D)
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
        if self.guard is not None:
            self.guard.check("G", loss_g, self.G, self.scaler_G)
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, ema_beta_at(lc.ema_beta, lc.ema_rampup, self.step + 1))
        with torch.no_grad():
            return {
                "loss_d": loss_d.detach(),
                "loss_g": loss_g.detach(),
                "d_real": torch.sigmoid(real_logits.detach()).mean(),
                "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
            }

    def _d(self, x: Tensor, labels: Tensor | None) -> Tensor:
        return self._D_run(x, labels) if labels is not None else self._D_run(x)

    def _augment(self, x: Tensor) -> Tensor:
        return diff_augment(x, self.augment_policy, self.aug_gen) if self.augment_policy else x

    def _first_compiled_step(self, real: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """Run the first step compiled; if torch.compile fails, warn once, undo the step and go eager."""
        snapshot = self._snapshot()
        self._compile_pending = False
        try:
            return self.train_step(real, labels)
        except Exception as e:  # noqa: BLE001 - InductorError, BackendCompilerFailed, missing compilers...
            log.warning(
                "torch.compile failed (%s: %s); continuing without it", type(e).__name__, str(e).splitlines()[0][:200]
            )
            self._restore_snapshot(snapshot)
            self._G_run, self._D_run = self.G, self.D
            self.runtime = dataclasses.replace(self.runtime, compile=False)
            return self.train_step(real, labels)

    def _snapshot(self) -> dict:
        mods = {"G": self.G, "D": self.D, **({"G_ema": self.G_ema} if self.G_ema is not None else {})}
        return {
            "modules": {k: copy.deepcopy(m.state_dict()) for k, m in mods.items()},
            "opts": [copy.deepcopy(o.state_dict()) for o in (self.opt_G, self.opt_D)],
            "scalers": [s.state_dict() for s in (self.scaler_G, self.scaler_D)],
            "rng": (torch.get_rng_state(), self.gen.get_state(), self.aug_gen.get_state()),
        }

    def _restore_snapshot(self, snap: dict) -> None:
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
        """Write a complete checkpoint of the current position."""
        if not self.is_main:  # only rank 0 writes; every rank holds the same state (distributed.py)
            return self.run_dir / f"ckpt-{self.step:09d}"
        mods = {"G": self.G.state_dict(), "D": self.D.state_dict()}
        if self.G_ema is not None:
            mods["G_ema"] = self.sampling_generator().state_dict()
        opt_g, groups_g = ckpt_io.optimizer_to_flat(self.opt_G, "opt_G")
        opt_d, groups_d = ckpt_io.optimizer_to_flat(self.opt_D, "opt_D")
        rng = {
            "rng.torch": torch.get_rng_state(),
            "rng.latent": self.gen.get_state(),
            "rng.augment": self.aug_gen.get_state(),
        }
        if self.device.type == "cuda":
            rng["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        np_state = np.random.get_state(legacy=False)
        np_state = {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}
        state = {
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "images_seen": self.images_seen,
            "seconds": self.seconds,
            "optim": {"G": groups_g, "D": groups_d},
            "amp": {"G": self.scaler_G.state_dict(), "D": self.scaler_D.state_dict()},
            "runtime": self.runtime.to_dict(),
            "rng_numpy": np_state,
            "rng_python": _py_rng_to_json(random.getstate()),
            "ganime_version": _version(),
            "world_size": self.world_size,
            "classes": self.classes,
        }
        return ckpt_io.save_checkpoint(
            self.run_dir, self.step, ckpt_io.flatten_state_dicts(**mods), {**opt_g, **opt_d, **rng}, state,
            self.cfg.keep_ckpts,
        )

    def restore(self, ckpt: Path) -> None:
        """Load every piece of state saved by `save`, so the run continues bit for bit."""
        state = ckpt_io.read_state(ckpt)
        model = ckpt_io.read_tensors(ckpt / ckpt_io.MODEL_FILE)
        train = ckpt_io.read_tensors(ckpt / ckpt_io.TRAIN_FILE)
        ckpt_io.load_module(self.G, ckpt_io.unflatten(model, "G"), f"G in {ckpt}")
        ckpt_io.load_module(self.D, ckpt_io.unflatten(model, "D"), f"D in {ckpt}")
        if self.G_ema is not None:
            ckpt_io.load_module(self.G_ema, ckpt_io.unflatten(model, "G_ema"), f"G_ema in {ckpt}")
        try:
            ckpt_io.optimizer_from_flat(self.opt_G, train, state["optim"]["G"], "opt_G")
            ckpt_io.optimizer_from_flat(self.opt_D, train, state["optim"]["D"], "opt_D")
            _match_param_layout(self.opt_G)
            _match_param_layout(self.opt_D)
            torch.set_rng_state(train["rng.torch"])
            self.gen.set_state(train["rng.latent"])
            if "rng.augment" in train:
                self.aug_gen.set_state(train["rng.augment"])
            if self.device.type == "cuda" and "rng.cuda" in train:
                torch.cuda.set_rng_state(train["rng.cuda"], self.device)
            for scaler, sd in ((self.scaler_G, state.get("amp", {}).get("G")), (self.scaler_D, state.get("amp", {}).get("D"))):
                if sd and scaler.is_enabled():
                    scaler.load_state_dict(sd)
            np.random.set_state(_np_state(state["rng_numpy"]))
            random.setstate(_py_rng_from_json(state["rng_python"]))
            self.step = int(state["step"])
            self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            self.images_seen, self.seconds = int(state["images_seen"]), float(state["seconds"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt} is incomplete or from another version ({type(e).__name__}: {e})") from None


def fixed_runtime(cfg: TrainConfig) -> Runtime:
    """The runtime a config asks for, with 'auto' read as the safe default (fp32, contiguous)."""
    prec = cfg.precision if cfg.precision != "auto" else "fp32"
    return Runtime(prec, cfg.channels_last == "on", cfg.compile)


def ema_beta_at(beta: float, rampup: float, step: int) -> float:
    """EMA decay after `step` steps: `beta`, or with a ramp-up a half-life of `rampup * step` steps
    (StyleGAN2-ADA's ema_rampup, Karras et al. 2020), so early averages do not drag in the random init."""
    if rampup > 0:
        return min(beta, 0.5 ** (1.0 / max(rampup * step, 1e-8)))
    return beta


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema = beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def refresh_bn_stats(G: nn.Module, z_dim: int, seed: int, device: torch.device) -> None:
    """Re-estimate BatchNorm running statistics for G's own weights ("standing statistics", Brock et al. 2019).

    G_ema's weights are an average, but the statistics it inherits belong to the current G; sampling in eval
    mode with them washes out colours. Averages over fixed latents (a seeded CPU generator), so the result
    depends only on the weights: resume stays exact and the saved G_ema samples well.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = G.training
    g = torch.Generator().manual_seed(seed)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    classes = getattr(G, "num_classes", 0)
    for _ in range(BN_REFRESH_BATCHES):
        z = torch.randn(BN_REFRESH_SIZE, z_dim, generator=g).to(device)
        G(z, (torch.arange(BN_REFRESH_SIZE) % classes).to(device)) if classes else G(z)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    G.train(was_training)


def _match_param_layout(opt: torch.optim.Optimizer) -> None:
    # checkpoints store contiguous tensors; give Adam's moments the parameters' layout (channels_last)
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def _version() -> str:
    from ganime import __version__

    return __version__


def _py_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _py_rng_from_json(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def _np_state(d: dict) -> dict:
    return {**d, "state": {**d["state"], "key": np.asarray(d["state"]["key"], dtype=np.uint32)}}


def _frozen_view(cfg: dict) -> dict:
    return {k: cfg[k] for k in FROZEN_SECTIONS if k in cfg}


def _budget_steps(cfg: TrainConfig, steps_per_epoch: int) -> int | None:
    """Total steps this run aims for; None when only a time budget is set."""
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps)
    if cfg.kimg:
        limits.append(math.ceil(cfg.kimg * 1000 / cfg.batch_size))
    if not limits and not cfg.minutes:
        limits.append(max(1, cfg.epochs) * steps_per_epoch)
    return min(limits) if limits else None


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to save and stop after the current step; a second signal aborts."""

    def __init__(self) -> None:
        self.reason = ""
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:  # noqa: PYI034 (typing.Self needs Python 3.11; we support 3.10)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a web server): no handlers
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.reason:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint and stopping after this step", self.reason)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True, force_unlock: bool = False
) -> TrainResult:
    """Train (or resume) a run in `out`; returns where it stopped and its last checkpoint.

    The run's only writer: a second trainer on `out` gets `RunLocked` (runlock.py); `force_unlock` takes over
    a lock left by another host. Under `torchrun` every process calls this and they train one model together
    (training/distributed.py); rank 0 holds the lock."""
    with distributed.session(cfg.device, out) as dist_env, distributed.run_lock(dist_env, out, force_unlock):
        return _train(cfg, out, resume, progress, dist_env)


def _train(
    cfg: TrainConfig, out: str | Path, resume: bool, progress: bool, dist_env: distributed.DistEnv
) -> TrainResult:
    run_dir = Path(out)
    if not resume and distributed.elastic_restart() and ckpt_io.list_checkpoints(run_dir):
        resume = True  # torchrun --max-restarts restarted the workers: continue from the last checkpoint
        log.warning("torchrun restart %d: resuming %s", distributed.elastic_restart(), run_dir)
    resume_from = None
    recorded = None
    if resume:
        resume_from = ckpt_io.resolve_checkpoint(run_dir)
        saved_state = ckpt_io.read_state(resume_from)
        # through the dataclasses: fields added since the run was saved take their defaults on both sides
        saved = json_roundtrip(TrainConfig.from_dict(saved_state["config"]).to_dict())
        if _frozen_view(saved) != _frozen_view(json_roundtrip(cfg.to_dict())):
            diff = [k for k in FROZEN_SECTIONS if saved.get(k) != json_roundtrip(cfg.to_dict()).get(k)]
            raise ConfigError(
                f"cannot resume {run_dir}: its {', '.join(diff)} config differs from the one asked for; "
                "resume with the run's own config (only stop budgets, intervals and device may change)"
            )
        recorded = saved_state.get("runtime") or _read_runtime_file(run_dir)
        distributed.check_resume(dist_env, resume_from)
    elif ckpt_io.list_checkpoints(run_dir):
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    cfg = validate(cfg)
    device = dist_env.device  # resolve_device(cfg.device), one GPU per process under torchrun
    configure_backends(device)
    threads = set_threads(dist_env.threads(cfg.threads)) if device.type == "cpu" else torch.get_num_threads()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    dataset = dist_env.main_first(  # one process per node builds the cache, the others then read it
        lambda: load_dataset(
            cfg.data.path, cfg.model.resolution, cfg.model.channels, cfg.data.background, cfg.data.cache_dir or None,
            max_archive_bytes=cfg.data.max_archive_mb * 2**20,
        )
    )
    if cfg.model.num_classes and dataset.classes and resume_from is None:
        # a conditional preset gets one class per label of its data set (e.g. the characters of a glyph set)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=len(dataset.classes)))
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist_env.is_main:
        ckpt_io.atomic_write_json(run_dir / "config.json", cfg.to_dict())
    runtime, runtime_info = dist_env.runtime(lambda: resolve_runtime(cfg, dataset, device, threads, recorded))
    if dist_env.is_main:
        if resume_from is not None:
            changes = _resume_runtime(run_dir, recorded, runtime, saved_state["step"], device, cfg.precision == "auto")
            runtime_info = {**runtime_info, "changes": changes}
        _write_runtime_file(run_dir, runtime, runtime_info)
    trainer = Trainer(cfg, dataset, device, run_dir, runtime)
    distributed.prepare(trainer, dist_env, cfg.sync_bn)  # DDP, data shard, rank-0-only outputs
    metrics = MetricsLog(run_dir / "metrics.csv") if dist_env.is_main else distributed.NullMetrics()
    if resume_from is not None:
        trainer.restore(resume_from)
        metrics.truncate_after(trainer.step)
        log.info("resumed %s at step %d (epoch %d)", resume_from, trainer.step, trainer.epoch + 1)
    guard = Guard(trainer, cfg.max_rollbacks, cfg.on_save_error)
    guard.last_checkpoint = resume_from  # what a run whose saves all fail (on-save-error=continue) ends on
    # --eval-every: own seeded draws, never the training RNG streams (training/evaluate.py)
    trainer.evaluator = TrainingEval(cfg, dataset.images, run_dir, device) if cfg.eval_every and dist_env.is_main else None
    spe = trainer.loader.steps_per_epoch
    total = _budget_steps(cfg, spe)
    log.info(
        "training %s on %d images (%s) at %dpx, batch %d, %d steps/epoch, device %s, %d threads, %s%s -> %s",
        cfg.preset, len(dataset), dataset.source, cfg.model.resolution, cfg.batch_size, spe, device, threads,
        runtime.label(), ", compiled" if runtime.compile else "", run_dir,
    )
    session_start = time.perf_counter()
    deadline = session_start + cfg.minutes * 60 if cfg.minutes else math.inf
    window: list[dict[str, Tensor]] = []
    win_t, win_load, win_n = 0.0, 0.0, 0
    stopped = "done"
    bar = Progress(total, trainer.step, enabled=progress and dist_env.is_main, deadline=deadline)
    with _StopFlag() as stop:
        while True:
            if total is not None and trainer.step >= total:
                break
            # all ranks stop after the same step: a signal to any rank or a budget stops them all
            out_of_time, signalled = dist_env.agree(time.perf_counter() >= deadline, bool(stop.reason))
            if out_of_time:
                stopped = "time"
                break
            if signalled:
                stopped = "signal"
                break
            if trainer.step_in_epoch >= spe:  # epoch boundary: grid, plots, checkpoint
                trainer.epoch += 1
                trainer.step_in_epoch = 0
                _end_epoch(trainer, metrics, guard)
                continue
            t_load = time.perf_counter()
            real, labels = trainer.loader.batch(trainer.epoch, trainer.step_in_epoch)
            t0 = time.perf_counter()
            dist_env.seed_step(trainer)  # per-rank augment/dropout draws (no-op in one process)
            stats = guard.train_step(real, labels)
            if stats is None:  # non-finite: rolled back to the last good state with a lower lr
                window, win_t, win_load, win_n = [], 0.0, 0.0, 0
                bar.restart(trainer.step)
                continue
            dt = time.perf_counter() - t0
            trainer.seconds += dt
            win_t += dt
            win_load += t0 - t_load
            trainer.step += 1
            trainer.step_in_epoch += 1
            trainer.images_seen += cfg.batch_size
            window.append(stats)
            win_n += cfg.batch_size
            if trainer.runtime != runtime:  # torch.compile fell back to eager in the first step
                runtime = trainer.runtime
                _write_runtime_file(run_dir, runtime, {**runtime_info, "compile_failed": True})
            if trainer.step % LOG_EVERY == 0 or trainer.step_in_epoch == spe:
                row = _window_row(window, win_t, win_load, win_n, dist_env, trainer.step)
                guard.try_write("metrics.csv", metrics.append, _row(trainer, row))
                bar.set_stats(trainer.step, trainer.epoch + 1, row)
                window, win_t, win_load, win_n = [], 0.0, 0.0, 0
            bar.update(trainer.step)
            if cfg.sample_every and trainer.step % cfg.sample_every == 0:
                guard.try_write("a sample grid", trainer.sample_grid, f"step_{trainer.step:07d}")
            if cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0:
                guard.save()
    bar.close()
    if window:  # stopped between logged steps (a short run, a signal, a time budget): log the last one too
        row = _window_row(window, win_t, win_load, win_n, dist_env, trainer.step)
        guard.try_write("metrics.csv", metrics.append, _row(trainer, row))
    if trainer.step_in_epoch >= spe:  # finished exactly on an epoch boundary
        trainer.epoch += 1
        trainer.step_in_epoch = 0
        _end_epoch(trainer, metrics, guard)
    path = guard.save() or guard.last_checkpoint or trainer.save()
    if dist_env.is_main:
        guard.try_write("plots", plot_run, run_dir)
    if not (run_dir / "samples").is_dir() or not any((run_dir / "samples").iterdir()):
        trainer.sample_grid(f"step_{trainer.step:07d}")
    secs = time.perf_counter() - session_start
    log.info("stopped (%s) at step %d, epoch %d; checkpoint %s", stopped, trainer.step, trainer.epoch, path)
    return TrainResult(run_dir, path, trainer.step, trainer.epoch, trainer.images_seen, stopped, secs)


# --- runtime (precision, layout) resolution ----------------------------------------------------------------
def resolve_runtime(
    cfg: TrainConfig,
    dataset: ImageDataset,
    device: torch.device,
    threads: int,
    recorded: dict | None = None,
) -> tuple[Runtime, dict]:
    """The run's precision and layout: as configured, as recorded by the run being resumed, from the
    per-machine cache, or timed now (`auto`). Returns it with a description for runtime.json."""
    cands = precision.candidates(cfg.precision, cfg.channels_last, device, cfg.compile)
    auto = cfg.precision == "auto" or cfg.channels_last == "auto"
    if recorded and auto:
        # a resumed run keeps the choice it started with: re-timing could pick another and break exactness
        rec = Runtime.from_dict(recorded)
        chosen = Runtime(
            rec.precision if cfg.precision == "auto" else cfg.precision,
            rec.channels_last if cfg.channels_last == "auto" else cfg.channels_last == "on",
            cfg.compile,
        )
        return chosen, {"source": "recorded"}
    if len(cands) == 1:
        return cands[0], {"source": "config"}
    key = json.dumps(
        {
            "machine": precision.machine_id(device, threads),
            "model": dataclasses.asdict(cfg.model),
            "batch_size": cfg.batch_size,
            "loss": dataclasses.asdict(cfg.loss),
            "candidates": [c.label() for c in cands],
        },
        sort_keys=True,
    )
    hit = precision.cached_choice(key)
    if hit is not None:
        chosen = dataclasses.replace(Runtime.from_dict(hit["runtime"]), compile=cfg.compile)
        log.info("runtime %s (cached choice for this machine, %s)", chosen.label(), precision.cache_file())
        return chosen, {"source": "cache", "timings_img_per_s": hit.get("timings", {})}
    t0 = time.perf_counter()
    all_cands = cands
    cands, conv_ms = precision.drop_slow_precisions(cands, lambda p: precision.conv_seconds(p, device))
    if len(cands) < len(all_cands):
        log.info(
            "runtime: not timing %s (a convolution takes %s ms)",
            ", ".join(c.label() for c in all_cands if c not in cands),
            ", ".join(f"{p} {v}" for p, v in conv_ms.items()),
        )
    chosen, timings = precision.pick_fastest(
        cands,
        lambda rt, batch, steps: _seconds_per_image(cfg, dataset, device, rt, batch, steps),
        cfg.batch_size,
    )
    secs = time.perf_counter() - t0
    log.info(
        "runtime %s: fastest of %s in %.0f s (img/s: %s)",
        chosen.label(), ", ".join(c.label() for c in cands), secs, ", ".join(f"{k} {v}" for k, v in timings.items()),
    )
    entry = {"runtime": chosen.to_dict(), "timings": timings, "conv_ms": conv_ms, "seconds": round(secs, 1)}
    precision.store_choice(key, entry)
    return chosen, {
        "source": "timed",
        "timings_img_per_s": timings,
        "conv_ms": conv_ms,
        "timing_seconds": round(secs, 1),
    }


def _resume_runtime(
    run_dir: Path, recorded: dict | None, runtime: Runtime, step: int, device: torch.device, auto: bool
) -> list[dict]:
    """runtime.json's list of switches of precision/layout (each ends bit-exactness from its step), with this
    resume's if it switches. When it keeps a precision much slower here than another (picked by `auto` on
    another machine, or a reduced precision emulated here), says so in one line."""
    changes = [c for c in (_read_runtime_file(run_dir) or {}).get("changes", []) if c.get("step", 0) < step]
    if not recorded:
        return changes
    rec = Runtime.from_dict(recorded)
    if (rec.precision, rec.channels_last) != (runtime.precision, runtime.channels_last):
        log.warning(
            "running %s instead of the run's %s from step %d on: from there the run is no longer bit-exact with an "
            "unbroken one (recorded in %s)", runtime.label(), rec.label(), step, run_dir / RUNTIME_FILE,
        )
        return [*changes, {"step": step, "from": rec.label(), "to": runtime.label()}]
    if not auto and runtime.precision == "fp32":  # asked for by name, and never emulated
        return changes
    others = [c.precision for c in precision.candidates("auto", "off", device)]
    advice = precision.faster_alternative(runtime.precision, others, lambda p: precision.conv_seconds(p, device))
    if advice is not None:
        fastest, ms = advice
        log.warning(
            "this run keeps %s (recorded when it started) to stay bit-exact, but here a %s convolution takes %.3g ms "
            "against %.3g ms in %s (%.0fx slower); to train faster resume with --precision %s, knowing the run is "
            "then no longer bit-exact from step %d on (runtime.json records where)",
            runtime.precision, runtime.precision, ms[runtime.precision], ms[fastest], fastest,
            ms[runtime.precision] / max(ms[fastest], 1e-9), fastest, step,
        )
    return changes


def _seconds_per_image(
    cfg: TrainConfig, dataset: ImageDataset, device: torch.device, runtime: Runtime, batch: int, steps: int
) -> float:
    """Wall time per image of `steps` train steps of a throw-away trainer, after one warm-up step."""
    probe_cfg = dataclasses.replace(cfg, batch_size=batch)
    trainer = Trainer(probe_cfg, dataset, device, Path("."), dataclasses.replace(runtime, compile=False))
    real, labels = trainer.loader.batch(0, 0)
    _sync(trainer.train_step(real, labels))  # warm-up: allocations, oneDNN/cuDNN kernel choice
    t0 = time.perf_counter()
    for _ in range(steps):
        stats = trainer.train_step(real, labels)
    _sync(stats)
    return (time.perf_counter() - t0) / (steps * batch)


def _sync(stats: dict[str, Tensor]) -> None:
    stats["loss_g"].item()  # waits for queued device work


def _write_runtime_file(run_dir: Path, runtime: Runtime, info: dict) -> None:
    ckpt_io.atomic_write_json(
        run_dir / RUNTIME_FILE,
        {
            **runtime.to_dict(),
            **info,
            "threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__,
        },
    )


def _read_runtime_file(run_dir: Path) -> dict | None:
    try:
        d = json.loads((run_dir / RUNTIME_FILE).read_text())
        Runtime.from_dict(d)
        return d
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _window_row(
    window: list[dict[str, Tensor]], win_t: float, win_load: float, win_n: int, dist_env: distributed.DistEnv, step: int
) -> dict[str, float]:
    """Mean losses of the steps since the last row (one device sync per row, not per step), with throughput."""
    row = {k: torch.stack([w[k] for w in window]).mean().item() for k in window[0]}
    row = dist_env.mean(row)  # torchrun: over all ranks' shards
    if not all(math.isfinite(v) for v in row.values()):
        log.warning("non-finite loss in the steps up to %d: %s", step, row)
    row["img_per_s"] = win_n / max(win_t, 1e-9)  # training steps only, not grids/checkpoints
    row["loader_share"] = win_load / max(win_load + win_t, 1e-9)  # goal: < 5 % of step time
    return row


def _row(trainer: Trainer, row: dict[str, float]) -> dict[str, float | int]:
    return {
        "step": trainer.step,
        "epoch": trainer.epoch + trainer.step_in_epoch / trainer.loader.steps_per_epoch,
        "kimg": trainer.images_seen / 1000,
        "seconds": trainer.seconds,
        **row,
    }


def _end_epoch(trainer: Trainer, metrics: MetricsLog, guard: Guard) -> None:
    guard.try_write("a sample grid", trainer.sample_grid, f"epoch_{trainer.epoch:04d}")
    if trainer.is_main:
        guard.try_write("plots", plot_run, trainer.run_dir)
    path = guard.save()
    evaluator = getattr(trainer, "evaluator", None)
    if evaluator is not None and evaluator.due(trainer.epoch):
        evaluator.run(trainer.sampling_generator(), _row(trainer, {}), metrics, path)


def json_roundtrip(d: dict) -> dict:
    """The dict as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(d))


def replace_budget(cfg: TrainConfig, **kw: object) -> TrainConfig:
    """A copy of `cfg` with new stop budgets/intervals (what may change on resume)."""
    return dataclasses.replace(cfg, **{k: v for k, v in kw.items() if v is not None})
