"""The training loop: D and G steps, EMA, logging, sample grids, checkpoints, exact resume, clean stop."""

from __future__ import annotations

import copy
import dataclasses
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
from ganime.config import TrainConfig, validate
from ganime.data.dataset import ImageDataset, load_dataset
from ganime.data.loader import BatchLoader
from ganime.errors import CheckpointError, ConfigError
from ganime.generate import make_grid, save_png, to_uint8
from ganime.losses import get_loss, r1_penalty
from ganime.models import build_discriminator, build_generator
from ganime.training.device import resolve_device, set_threads
from ganime.training.report import MetricsLog, plot_run

log = logging.getLogger(__name__)

# Config sections that define the experiment: resume refuses a checkpoint whose sections differ.
FROZEN_SECTIONS = ("model", "optim", "loss", "data", "batch_size", "seed")
LOG_EVERY = 10


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

    def __init__(self, cfg: TrainConfig, dataset: ImageDataset, device: torch.device, run_dir: Path) -> None:
        self.cfg, self.device, self.run_dir = cfg, device, run_dir
        m = cfg.model
        if m.num_classes and dataset.labels is None:
            raise ConfigError("this preset is class-conditional but the data set has no labels")
        if m.num_classes and len(dataset.classes) > m.num_classes:
            raise ConfigError(f"the data set has {len(dataset.classes)} classes; the model allows {m.num_classes}")
        torch.manual_seed(cfg.seed)  # initial weights and dropout draw from the global CPU RNG
        self.G = build_generator(m).to(device)
        self.D = build_discriminator(m).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.loss.ema_beta > 0 else None
        o = cfg.optim
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas_g)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas_d)
        self.loss = get_loss(cfg.loss.loss)
        self.loader = BatchLoader(dataset, cfg.batch_size, cfg.seed, device=device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # latents of the train steps
        g = torch.Generator().manual_seed(cfg.seed + 2)
        self.fixed_z = torch.randn(cfg.grid_size, m.z_dim, generator=g).to(device)
        self.fixed_labels = (
            (torch.arange(cfg.grid_size) % len(dataset.classes)).to(device) if m.num_classes else None
        )
        self.step = self.epoch = self.step_in_epoch = 0
        self.images_seen = 0
        self.seconds = 0.0  # training time summed over sessions

    # --- one iteration -----------------------------------------------------------------------------------
    def train_step(self, real: Tensor, labels: Tensor | None) -> dict[str, float]:
        """One D step then one G step on the same fake batch (pytorch/examples dcgan order)."""
        cfg = self.cfg
        n = real.shape[0]
        z = torch.randn(n, cfg.model.z_dim, generator=self.gen, device=self.device)
        fake_labels = labels
        fake = self.G(z, fake_labels) if labels is not None else self.G(z)

        # D: maximise log D(x) + log(1 - D(G(z))); the fake batch is detached so G gets no D gradient
        self.opt_D.zero_grad(set_to_none=True)
        do_r1 = cfg.loss.r1_gamma > 0 and self.step % cfg.loss.r1_every == 0
        if do_r1:
            real = real.detach().requires_grad_(True)
        real_logits = self._d(real, labels)
        fake_logits = self._d(fake.detach(), fake_labels)
        loss_d = self.loss.d(real_logits, fake_logits)
        if do_r1:
            # lazy regularisation: every k steps with weight k (StyleGAN2, Karras et al. 2020, sec. 3.1)
            loss_d = loss_d + (cfg.loss.r1_gamma / 2) * cfg.loss.r1_every * r1_penalty(real_logits, real)
        loss_d.backward()
        self.opt_D.step()

        # G: maximise log D(G(z)), reusing the same fake batch through the updated D
        self.opt_G.zero_grad(set_to_none=True)
        fake_logits_g = self._d(fake, fake_labels)
        loss_g = self.loss.g(fake_logits_g)
        loss_g.backward()
        self.opt_G.step()
        if self.G_ema is not None:
            self._update_ema()
        return {
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "d_real": torch.sigmoid(real_logits.detach()).mean().item(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean().item(),
        }

    def _d(self, x: Tensor, labels: Tensor | None) -> Tensor:
        return self.D(x, labels) if labels is not None else self.D(x)

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.cfg.loss.ema_beta
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1.0 - beta)  # ema = beta * ema + (1 - beta) * p
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- outputs -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, name: str) -> Path:
        """Grid of the fixed latents from G_ema (else G), in eval mode, as samples/<name>.png."""
        net = self.G_ema if self.G_ema is not None else self.G
        was_training = net.training
        net.eval()
        imgs = net(self.fixed_z, self.fixed_labels) if self.fixed_labels is not None else net(self.fixed_z)
        net.train(was_training)
        nrow = int(math.ceil(math.sqrt(len(imgs))))
        return save_png(make_grid(to_uint8(imgs), nrow), self.run_dir / "samples" / f"{name}.png")

    # --- checkpoints -------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Write a complete checkpoint of the current position."""
        mods = {"G": self.G.state_dict(), "D": self.D.state_dict()}
        if self.G_ema is not None:
            mods["G_ema"] = self.G_ema.state_dict()
        opt_g, groups_g = ckpt_io.optimizer_to_flat(self.opt_G, "opt_G")
        opt_d, groups_d = ckpt_io.optimizer_to_flat(self.opt_D, "opt_D")
        rng = {"rng.torch": torch.get_rng_state(), "rng.latent": self.gen.get_state()}
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
            "rng_numpy": np_state,
            "rng_python": _py_rng_to_json(random.getstate()),
            "ganime_version": _version(),
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
            torch.set_rng_state(train["rng.torch"])
            self.gen.set_state(train["rng.latent"])
            if self.device.type == "cuda" and "rng.cuda" in train:
                torch.cuda.set_rng_state(train["rng.cuda"], self.device)
            np.random.set_state(_np_state(state["rng_numpy"]))
            random.setstate(_py_rng_from_json(state["rng_python"]))
            self.step = int(state["step"])
            self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            self.images_seen, self.seconds = int(state["images_seen"]), float(state["seconds"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt} is incomplete or from another version ({type(e).__name__}: {e})") from None


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

    def __enter__(self) -> _StopFlag:
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


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a run in `out`; returns where it stopped and its last checkpoint."""
    from tqdm.auto import tqdm

    run_dir = Path(out)
    resume_from = None
    if resume:
        resume_from = ckpt_io.resolve_checkpoint(run_dir)
        saved = ckpt_io.read_state(resume_from)["config"]
        if _frozen_view(saved) != _frozen_view(json_roundtrip(cfg.to_dict())):
            diff = [k for k in FROZEN_SECTIONS if saved.get(k) != json_roundtrip(cfg.to_dict()).get(k)]
            raise ConfigError(
                f"cannot resume {run_dir}: its {', '.join(diff)} config differs from the one asked for; "
                "resume with the run's own config (only stop budgets, intervals and device may change)"
            )
    elif ckpt_io.list_checkpoints(run_dir):
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    cfg = validate(cfg)
    device = resolve_device(cfg.device)
    threads = set_threads(cfg.threads) if device.type == "cpu" else torch.get_num_threads()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    dataset = load_dataset(
        cfg.data.path, cfg.model.resolution, cfg.model.channels, cfg.data.background, cfg.data.cache_dir or None
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_io.atomic_write_json(run_dir / "config.json", cfg.to_dict())
    trainer = Trainer(cfg, dataset, device, run_dir)
    metrics = MetricsLog(run_dir / "metrics.csv")
    if resume_from is not None:
        trainer.restore(resume_from)
        metrics.truncate_after(trainer.step)
        log.info("resumed %s at step %d (epoch %d)", resume_from, trainer.step, trainer.epoch + 1)
    spe = trainer.loader.steps_per_epoch
    total = _budget_steps(cfg, spe)
    log.info(
        "training %s on %d images (%s) at %dpx, batch %d, %d steps/epoch, device %s, %d threads -> %s",
        cfg.preset, len(dataset), dataset.source, cfg.model.resolution, cfg.batch_size, spe, device, threads, run_dir,
    )
    session_start = time.perf_counter()
    deadline = session_start + cfg.minutes * 60 if cfg.minutes else math.inf
    window: list[dict[str, float]] = []
    win_t, win_n = 0.0, 0
    stopped = "done"
    bar = tqdm(total=total, initial=trainer.step, disable=not progress, unit="step", dynamic_ncols=True)
    with _StopFlag() as stop:
        while True:
            if total is not None and trainer.step >= total:
                break
            if time.perf_counter() >= deadline:
                stopped = "time"
                break
            if stop.reason:
                stopped = "signal"
                break
            if trainer.step_in_epoch >= spe:  # epoch boundary: grid, plots, checkpoint
                trainer.epoch += 1
                trainer.step_in_epoch = 0
                _end_epoch(trainer, metrics)
                continue
            real, labels = trainer.loader.batch(trainer.epoch, trainer.step_in_epoch)
            t0 = time.perf_counter()
            stats = trainer.train_step(real, labels)
            dt = time.perf_counter() - t0
            trainer.seconds += dt
            win_t += dt
            trainer.step += 1
            trainer.step_in_epoch += 1
            trainer.images_seen += cfg.batch_size
            window.append(stats)
            win_n += cfg.batch_size
            if not all(math.isfinite(v) for v in stats.values()):
                log.warning("non-finite loss at step %d: %s", trainer.step, stats)
            if trainer.step % LOG_EVERY == 0 or trainer.step_in_epoch == spe:
                row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                row["img_per_s"] = win_n / max(win_t, 1e-9)  # training steps only, not grids/checkpoints
                metrics.append(_row(trainer, row))
                bar.set_postfix(
                    ep=trainer.epoch + 1, D=f"{row['loss_d']:.3f}", G=f"{row['loss_g']:.3f}",
                    Dx=f"{row['d_real']:.2f}", DGz=f"{row['d_fake']:.2f}", ips=f"{row['img_per_s']:.0f}",
                )
                window, win_t, win_n = [], 0.0, 0
            bar.update(1)
            if cfg.sample_every and trainer.step % cfg.sample_every == 0:
                trainer.sample_grid(f"step_{trainer.step:07d}")
            if cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0:
                trainer.save()
    bar.close()
    if trainer.step_in_epoch >= spe:  # finished exactly on an epoch boundary
        trainer.epoch += 1
        trainer.step_in_epoch = 0
        _end_epoch(trainer, metrics)
    path = trainer.save()
    plot_run(run_dir)
    if not (run_dir / "samples").is_dir() or not any((run_dir / "samples").iterdir()):
        trainer.sample_grid(f"step_{trainer.step:07d}")
    secs = time.perf_counter() - session_start
    log.info("stopped (%s) at step %d, epoch %d; checkpoint %s", stopped, trainer.step, trainer.epoch, path)
    return TrainResult(run_dir, path, trainer.step, trainer.epoch, trainer.images_seen, stopped, secs)


def _row(trainer: Trainer, row: dict[str, float]) -> dict[str, float | int]:
    return {
        "step": trainer.step,
        "epoch": trainer.epoch + trainer.step_in_epoch / trainer.loader.steps_per_epoch,
        "kimg": trainer.images_seen / 1000,
        "seconds": trainer.seconds,
        **row,
    }


def _end_epoch(trainer: Trainer, metrics: MetricsLog) -> None:
    trainer.sample_grid(f"epoch_{trainer.epoch:04d}")
    plot_run(trainer.run_dir)
    trainer.save()


def json_roundtrip(d: dict) -> dict:
    """The dict as it reads back from JSON (tuples become lists)."""
    import json

    return json.loads(json.dumps(d))


def replace_budget(cfg: TrainConfig, **kw: object) -> TrainConfig:
    """A copy of `cfg` with new stop budgets/intervals (what may change on resume)."""
    return dataclasses.replace(cfg, **{k: v for k, v in kw.items() if v is not None})
