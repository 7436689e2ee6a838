"""The training loop: a session of guarded steps with logging, sample grids and checkpoints, from a fresh start
or an exact resume to a step/image budget, a time limit or a signal (Ctrl-C saves and stops).

The pieces: Trainer (training/trainer.py) holds the nets and does one step; autotune picks the precision and
layout; Guard (training/guard.py) rolls back non-finite steps and applies the save-error policy;
periodic_eval measures the generator every few epochs; distributed joins a torchrun job.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganime import checkpoint as ckpt_io
from ganime.config import TrainConfig, resume_config, validate
from ganime.data.dataset import ImageDataset, load_dataset
from ganime.device import configure_backends, cpu_model, set_threads
from ganime.errors import ConfigError
from ganime.io import utc_now
from ganime.training import autotune, distributed, growth
from ganime.training.grow import grow_source
from ganime.training.guard import Guard, step_check
from ganime.training.periodic_eval import TrainingEval
from ganime.training.progress import Progress
from ganime.training.report import MetricsLog, plot_run, record_sitting
from ganime.training.trainer import Trainer

log = logging.getLogger(__name__)

LOG_EVERY = 10


@dataclass
class TrainResult:
    """What a finished (or stopped) `train` call did."""

    run_dir: Path
    checkpoint: Path
    step: int
    epoch: int
    images_seen: int
    stopped: str  # "done" | "time" | "signal" | "cap" (the capped last stage had its kimg: growth.final_kimg)
    seconds: float


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
    cfg, resume_from, saved_state = _start_or_resume(cfg, run_dir, resume, dist_env)
    cfg = validate(cfg)
    # only a new run grows, and it checks the run it grows from before writing anything; a resumed one needs
    # nothing of that run
    grow_ckpt = grow_source(cfg.grow_from, cfg.model) if cfg.grow_from and resume_from is None else None
    device = dist_env.device  # resolve_device(cfg.device), one GPU per process under torchrun
    configure_backends(device)
    threads = set_threads(dist_env.threads(cfg.threads)) if device.type == "cpu" else torch.get_num_threads()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    cfg, dataset = _load_data(cfg, run_dir, dist_env, fresh=resume_from is None)
    runtime, runtime_info = autotune.choose_runtime(cfg, dataset, dist_env, threads, run_dir, saved_state)
    # DDP, data shard and rank-0-only outputs under torchrun; under the guard each update is checked first
    trainer = Trainer(
        cfg, dataset, device, run_dir, runtime, dist_env=dist_env, step_check=step_check(cfg.max_rollbacks)
    )
    clock = None
    if cfg.growth.start:
        cfg, clock = _plan_growth(trainer, run_dir, dist_env, fresh=resume_from is None)
    metrics = MetricsLog(run_dir / "metrics.csv") if dist_env.is_main else distributed.NullMetrics()
    if resume_from is not None:
        trainer.restore(resume_from)
        metrics.truncate_after(trainer.step)
        log.info("resumed %s at step %d (epoch %d)", resume_from, trainer.step, trainer.epoch + 1)
    elif grow_ckpt is not None:
        trainer.grow(grow_ckpt)
    # a run whose saves all fail (on-save-error=continue) ends on the checkpoint it resumed from
    guard = Guard(trainer, cfg.max_rollbacks, cfg.on_save_error, last_checkpoint=resume_from)
    # --eval-every: own seeded draws, never the training RNG streams (training/periodic_eval.py)
    evaluator = TrainingEval(cfg, dataset.images, run_dir, device) if cfg.eval_every and dist_env.is_main else None
    log.info(
        "training %s on %d images (%s) at %dpx, batch %d, %d steps/epoch, device %s, %d threads, %s%s -> %s",
        cfg.preset, len(dataset), dataset.source, cfg.model.resolution, cfg.batch_size,
        trainer.loader.steps_per_epoch, device, threads, runtime.label(), ", compiled" if runtime.compile else "",
        run_dir,
    )
    return _Session(trainer, guard, metrics, evaluator, dist_env, runtime_info, clock).run(progress)


def _plan_growth(
    trainer: Trainer, run_dir: Path, dist_env: distributed.DistEnv, fresh: bool
) -> tuple[TrainConfig, growth.StageClock | None]:
    """A new run without grow points gets them planned from its budget and the speed of each stage on this
    machine (training/growth.py), written into RUN/config.json and RUN/plan.json; the plan is logged either way.
    Such a run also gets a StageClock: its sitting plans again when a stage runs far off its probe's speed."""
    cfg, speeds, clock = trainer.cfg, None, None
    if fresh and not cfg.growth.kimg:
        measured = growth.measure_speeds(trainer)
        speeds = dist_env.from_main(lambda: measured)  # every rank follows rank 0's plan
        points = growth.plan_points(cfg, speeds, trainer.loader.steps_per_epoch)
        cfg = dataclasses.replace(cfg, growth=dataclasses.replace(cfg.growth, kimg=points))
        trainer.cfg = cfg
        clock = growth.StageClock(speeds)
        if dist_env.is_main:
            ckpt_io.atomic_write_json(run_dir / "config.json", cfg.to_dict())
    if dist_env.is_main:
        if fresh:
            growth.write_plan(run_dir, cfg, speeds)
        elif speeds is None and (plan := growth.read_plan(run_dir)):
            speeds = [s["img_per_s"] for s in plan["stages"]]
        log.info("growth plan (%s):\n%s", "new" if fresh else "resumed", "\n".join(growth.describe(cfg, speeds)))
    return cfg, clock


def _start_or_resume(
    cfg: TrainConfig, run_dir: Path, resume: bool, dist_env: distributed.DistEnv
) -> tuple[TrainConfig, Path | None, dict | None]:
    """The config to train, and when resuming the checkpoint and its state.json; refuses to start over a run, or
    to resume with another experiment (config.resume_config)."""
    if not resume and distributed.elastic_restart() and ckpt_io.list_checkpoints(run_dir):
        resume = True  # torchrun --max-restarts restarted the workers: continue from the last checkpoint
        log.warning("torchrun restart %d: resuming %s", distributed.elastic_restart(), run_dir)
    if not resume:
        if ckpt_io.list_checkpoints(run_dir):
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out"
            )
        return cfg, None, None
    resume_from = ckpt_io.resolve_checkpoint(run_dir)
    saved_state = ckpt_io.read_state(resume_from)
    # through the dataclasses: fields added since the run was saved take their defaults
    saved = TrainConfig.from_dict(saved_state["config"])
    if not cfg.growth.kimg:  # not asked for: the grow points the run planned when it started
        cfg = dataclasses.replace(cfg, growth=dataclasses.replace(cfg.growth, kimg=saved.growth.kimg))
    cfg = resume_config(saved, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    distributed.check_resume(dist_env, resume_from)
    return cfg, resume_from, saved_state


def _load_data(
    cfg: TrainConfig, run_dir: Path, dist_env: distributed.DistEnv, fresh: bool
) -> tuple[TrainConfig, ImageDataset]:
    """The data set and the config sized to it (a fresh conditional run); rank 0 writes RUN/config.json."""
    dataset = dist_env.main_first(  # one process per node builds the cache, the others then read it
        lambda: load_dataset(
            cfg.data.path, cfg.model.resolution, cfg.model.channels, cfg.data.background, cfg.data.cache_dir or None,
            max_archive_bytes=cfg.data.max_archive_mb * 2**20,
        )
    )
    if cfg.model.num_classes and dataset.classes and fresh:
        # a conditional preset gets one class per label of its data set (e.g. the characters of a glyph set)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=len(dataset.classes)))
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist_env.is_main:
        ckpt_io.atomic_write_json(run_dir / "config.json", cfg.to_dict())
    return cfg, dataset


class _Session:
    """One `train` call's steps, from the trainer's position to its budget, the time limit or a signal."""

    def __init__(
        self,
        trainer: Trainer,
        guard: Guard,
        metrics: MetricsLog | distributed.NullMetrics,
        evaluator: TrainingEval | None,
        dist_env: distributed.DistEnv,
        runtime_info: dict,
        clock: growth.StageClock | None = None,
    ) -> None:
        self.trainer, self.guard, self.metrics, self.evaluator = trainer, guard, metrics, evaluator
        self.clock, self.replans = clock, []  # a newly planned run: its stages' speeds, its plans made again
        self.dist_env = dist_env
        self.runtime, self.runtime_info = trainer.runtime, runtime_info
        self.window = _Window()
        self.last_save = time.perf_counter()  # --ckpt-minutes counts from here
        self.save_due = False

    def run(self, progress: bool) -> TrainResult:
        """Train, save the last checkpoint, and say where it stopped."""
        t = self.trainer
        total = _budget_steps(t.cfg, t.loader.steps_per_epoch)
        session_start = self.session_start = time.perf_counter()
        deadline = session_start + t.cfg.minutes * 60 if t.cfg.minutes else math.inf
        bar = Progress(total, t.step, enabled=progress and self.dist_env.is_main, deadline=deadline)
        sitting = {
            "started": utc_now(), "from_step": t.step, "from_kimg": round(t.images_seen / 1000, 3),
            "device": str(t.device), "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "processes": self.dist_env.world_size, "runtime": self.runtime.label(),
        }
        if t.is_main:
            self.guard.try_write("sittings.json", record_sitting, t.run_dir, sitting)
        train_seconds = t.seconds
        stopped = self._steps(total, deadline, bar)
        bar.close()
        path = self._finish()
        secs = time.perf_counter() - session_start
        if t.is_main:
            end = {"to_step": t.step, "to_kimg": round(t.images_seen / 1000, 3), "stopped": stopped,
                   "train_seconds": round(t.seconds - train_seconds, 3), "wall_seconds": round(secs, 3)}
            self.guard.try_write("sittings.json", record_sitting, t.run_dir, sitting | end)
        log.info("stopped (%s) at step %d, epoch %d; checkpoint %s", stopped, t.step, t.epoch, path)
        return TrainResult(t.run_dir, path, t.step, t.epoch, t.images_seen, stopped, secs)

    def _steps(self, total: int | None, deadline: float, bar: Progress) -> str:
        """Step until `total` ("done"), `deadline` ("time"), a signal ("signal") or the capped last stage's end
        ("cap")."""
        t = self.trainer
        with _StopFlag() as stop:
            while True:
                # the cap first: a budget that ends where the capped last stage does leaves nothing to resume
                if t.images_seen >= growth.final_stage_end(t.cfg):  # the same on every rank
                    return "cap"
                if total is not None and t.step >= total:
                    return "done"
                # all ranks stop after the same step: a signal to any rank or a budget stops them all
                now = time.perf_counter()
                # --ckpt-minutes: every rank saves after the same step (rank 0 writes)
                due = bool(t.cfg.ckpt_minutes) and now - self.last_save >= t.cfg.ckpt_minutes * 60
                out_of_time, signalled, self.save_due = self.dist_env.agree(now >= deadline, bool(stop.reason), due)
                if out_of_time:
                    return "time"
                if signalled:
                    return "signal"
                if t.epoch_finished:  # epoch boundary: grid, plots, checkpoint
                    _end_epoch(t, self.guard, self.metrics, self.evaluator)
                    self.last_save = time.perf_counter()
                else:
                    self._step(bar)

    def _step(self, bar: Progress) -> None:
        """One guarded train step, then the metrics row, grid and checkpoint that fall due."""
        t, cfg = self.trainer, self.trainer.cfg
        t_load = time.perf_counter()
        real, labels = t.loader.batch(t.epoch, t.step_in_epoch)
        t0 = time.perf_counter()
        self.dist_env.seed_step(cfg.seed, t.step, t.aug_gen)  # per-rank augment/dropout draws (no-op in one process)
        stats = self.guard.train_step(real, labels)
        if stats is None:  # non-finite: rolled back to the last good state with a lower lr
            self.window = _Window()
            bar.restart(t.step)
            return
        dt = time.perf_counter() - t0
        t.advance(dt)
        self.window.add(stats, dt, t0 - t_load, cfg.batch_size)
        if self.clock is not None:
            if (speed := self.clock.add(t.depth, dt, cfg.batch_size)) is not None:
                self._replan(speed)
            # a capped run of minutes: the cap would end it early where a stage runs faster than planned
            pace = self.clock.pace(t.depth, time.perf_counter(), t.images_seen)
            if pace is not None and cfg.minutes and cfg.growth.final_kimg:
                self._replan(pace, growth.PACE_FACTOR)
        if t.runtime != self.runtime:  # torch.compile fell back to eager in the first step
            self.runtime = t.runtime
            autotune.write_runtime_file(t.run_dir, self.runtime, {**self.runtime_info, "compile_failed": True})
        if t.step % LOG_EVERY == 0 or t.step_in_epoch == t.loader.steps_per_epoch:
            bar.set_stats(t.step, t.epoch + 1, self._log_window())
        bar.update(t.step)
        if cfg.sample_every and t.step % cfg.sample_every == 0:
            self.guard.try_write("a sample grid", t.sample_grid, f"step_{t.step:07d}")
        if (cfg.ckpt_every and t.step % cfg.ckpt_every == 0) or self.save_due:
            self.guard.save()
            self.last_save = time.perf_counter()

    def _replan(self, speed: float, tolerance: float | None = None) -> None:
        """Plan the rest of the run again when the stage it trains runs at `speed` img/s, more than `tolerance`
        (default growth.REPLAN_FACTOR) times off what the plan assumed (rank 0's measurement decides for every
        rank). The new grow points go into the run's config, so its next checkpoint resumes by them."""
        t = self.trainer
        clock, old = self.clock, t.cfg
        stage, elapsed = old.model.levels - clock.depth, time.perf_counter() - self.session_start

        def decide() -> list | None:  # JSON for from_main: [grow points, speeds] or None
            new = growth.replan(old, clock, speed, t.images_seen, elapsed, t.loader.steps_per_epoch, tolerance)
            return None if new is None else [list(new[0].growth.kimg), new[1]]

        decided = self.dist_env.from_main(decide)
        if decided is None:
            return
        points, speeds = decided
        t.cfg = dataclasses.replace(old, growth=dataclasses.replace(old.growth, kimg=tuple(points)))
        self.replans.append({
            "at_kimg": round(t.images_seen / 1000, 3), "resolution": old.model.resolution >> clock.depth,
            "planned_img_per_s": round(clock.speeds[stage], 1), "measured_img_per_s": round(speeds[stage], 1),
            "kimg_before": list(old.growth.kimg), "kimg": points,
        })
        planned, clock.speeds = clock.speeds[stage], speeds
        if t.is_main:
            log.warning(
                "growth: %d px trains at %.0f img/s, not the %.0f the plan was timed at: planned again\n%s",
                old.model.resolution >> clock.depth, speeds[stage], planned,
                "\n".join(growth.describe(t.cfg, clock.speeds)),
            )
            self.guard.try_write("config.json", ckpt_io.atomic_write_json, t.run_dir / "config.json", t.cfg.to_dict())
            self.guard.try_write("plan.json", growth.write_plan, t.run_dir, t.cfg, clock.speeds, self.replans)

    def _log_window(self) -> dict[str, float]:
        """Append the window's row to metrics.csv and start a new window; returns the row."""
        row = self.window.row(self.dist_env, self.trainer.step)
        self.guard.try_write("metrics.csv", self.metrics.append, _row(self.trainer, row))
        self.window = _Window()
        return row

    def _finish(self) -> Path:
        """The last row, epoch end and checkpoint of a session that stopped; returns the checkpoint."""
        t = self.trainer
        if self.window.stats:  # stopped between logged steps (a short run, a signal, a time budget): log them too
            self._log_window()
        if t.epoch_finished:  # finished exactly on an epoch boundary
            _end_epoch(t, self.guard, self.metrics, self.evaluator)
        path = self.guard.save() or self.guard.last_checkpoint or t.save()
        if t.is_main:
            self.guard.try_write("plots", plot_run, t.run_dir)
        if not (t.run_dir / "samples").is_dir() or not any((t.run_dir / "samples").iterdir()):
            t.sample_grid(f"step_{t.step:07d}")
        return path


def _end_epoch(
    trainer: Trainer, guard: Guard, metrics: MetricsLog | distributed.NullMetrics, evaluator: TrainingEval | None
) -> None:
    """Start the next epoch after a grid, plots and a checkpoint of the finished one, and its evaluation if due."""
    trainer.next_epoch()
    guard.try_write("a sample grid", trainer.sample_grid, f"epoch_{trainer.epoch:04d}")
    if trainer.is_main:
        guard.try_write("plots", plot_run, trainer.run_dir)
    path = guard.save()
    if evaluator is not None and evaluator.due(trainer.epoch):
        evaluator.run(trainer.sampling_generator(), _row(trainer, {}), metrics, path)


@dataclass
class _Window:
    """The steps since the last metrics row: their stats (device tensors, read once per row) and timings."""

    stats: list[dict[str, Tensor]] = field(default_factory=list)
    step_seconds: float = 0.0
    load_seconds: float = 0.0
    images: int = 0

    def add(self, stats: dict[str, Tensor], step_seconds: float, load_seconds: float, images: int) -> None:
        self.stats.append(stats)
        self.step_seconds += step_seconds
        self.load_seconds += load_seconds
        self.images += images

    def row(self, dist_env: distributed.DistEnv, step: int) -> dict[str, float]:
        """Mean losses of the steps since the last row (one device sync per row, not per step), with throughput."""
        row = {k: torch.stack([w[k] for w in self.stats]).mean().item() for k in self.stats[0]}
        row = dist_env.mean(row)  # torchrun: over all ranks' shards
        if not all(math.isfinite(v) for v in row.values()):
            log.warning("non-finite loss in the steps up to %d: %s", step, row)
        row["img_per_s"] = self.images / max(self.step_seconds, 1e-9)  # training steps only, not grids/checkpoints
        row["loader_share"] = self.load_seconds / max(self.load_seconds + self.step_seconds, 1e-9)  # goal: < 5 %
        return row


def _row(trainer: Trainer, row: dict[str, float]) -> dict[str, float | int]:
    return {
        "step": trainer.step,
        "epoch": trainer.epoch + trainer.step_in_epoch / trainer.loader.steps_per_epoch,
        "kimg": trainer.images_seen / 1000,
        "seconds": trainer.seconds,
        **row,
    }


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
