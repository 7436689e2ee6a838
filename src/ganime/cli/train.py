"""`ganime train`: parse flags into a TrainConfig, call ganime.train, print where the run is."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ganime.cli import app
from ganime.config import DEFAULT_PRESET, TrainConfig
from ganime.errors import ConfigError

if TYPE_CHECKING:
    from ganime.training.loop import TrainResult


def _default_out(preset: str) -> Path:
    from ganime.checkpoint import list_checkpoints

    base = Path("runs") / preset
    out, i = base, 2
    while list_checkpoints(out):
        out, i = Path(f"{base}-{i}"), i + 1
    return out


def _auto_resolution(cfg: TrainConfig, data: str | None, budget: dict) -> int | None:
    """A growing preset ends at 128 px on large data with a long budget (training/growth.py), else None."""
    from ganime import config as C
    from ganime.data.dataset import native_size
    from ganime.training.growth import auto_resolution

    @functools.cache
    def native() -> int:  # read from the files only when the budget is long enough to ask
        return native_size(data or cfg.data.path)

    size = auto_resolution(C.override(cfg, **budget), native)
    if size == cfg.model.resolution:
        return None
    typer.echo(f"data is {native()} px and the budget is long: growing to {size} px (--resolution {cfg.model.resolution} keeps {cfg.model.resolution} px)", err=True)
    return size


def _long_start(cfg: TrainConfig, budget: dict) -> TrainConfig:
    """A growing preset starts at 64 px on a long budget (training/growth.py), and says so."""
    from ganime import config as C
    from ganime.training.growth import LONG_KIMG, LONG_MINUTES, long_start

    started = long_start(C.override(cfg, **budget))
    if started.growth.start == cfg.growth.start:
        return cfg
    size = cfg.model.resolution
    how = (
        f"growing from {started.growth.start} px to {size} px ({size} px for at most {started.growth.final_kimg:g} kimg)"
        if started.growth.start else f"training the fixed {size} px network"
    )
    typer.echo(
        f"the budget is long ({LONG_MINUTES:g} minutes or {LONG_KIMG:g} kimg or more): {how}, which beats starting at "
        f"{cfg.growth.start} px past the first minutes (--grow-at with {cfg.model.levels} grow points starts at {cfg.growth.start} px anyway)",
        err=True,
    )
    return started


def _grow_points(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--grow-at takes thousands of images as a comma list, e.g. 20,60; got {text!r}") from None


@app.command("train")
def train(
    data: str = typer.Option("", "--data", help="Folder, .zip, .tar(.gz) or .npz of images, or a built-in set: faces (default), emoji."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Recipe: grow (default: grows 16 -> 64 px by a plan made from the budget; from 15 minutes on it starts at 64 px), modern, tutorial, tutorial-small, ... (ganime train --list-presets)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/PRESET)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this directory exactly where it stopped."),
    epochs: int = typer.Option(None, help="Stop after this many epochs (default: the preset's)."),
    kimg: float = typer.Option(None, help="Stop after this many thousand real images."),
    minutes: float = typer.Option(None, help="Stop after this many minutes of training (this session)."),
    steps: int = typer.Option(None, "--steps", help="Stop after this many steps in total."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Images per step."),
    resolution: int = typer.Option(None, "--resolution", "-r", help="Image size: 16, 32, 64, 128 or 256."),
    seed: int = typer.Option(None, help="Random seed (data order, latents, init)."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(None, help="fp32, bf16, fp16 or auto (times each and picks the fastest)."),
    channels_last: str = typer.Option(None, "--channels-last", help="on, off or auto."),
    threads: int = typer.Option(None, help="CPU threads (default: physical cores)."),
    sample_every: int = typer.Option(None, help="Also write a sample grid every N steps."),
    ckpt_every: int = typer.Option(None, help="Also checkpoint every N steps."),
    ckpt_minutes: float = typer.Option(None, "--ckpt-minutes", help="Also checkpoint every N minutes (default 10; 0 = off)."),
    grow_at: str = typer.Option(None, "--grow-at", help="Growing presets: grow at these thousands of images (comma list, one per block) instead of the plan."),
    keep: int = typer.Option(None, help="Checkpoints to keep (newest)."),
    max_rollbacks: int = typer.Option(None, "--max-rollbacks", help="On NaN/inf: roll back and halve the lr at most this often, then stop (0 = off; default 3)."),
    on_save_error: str = typer.Option(None, "--on-save-error", help="A failed checkpoint write (disk full): stop (default) or continue."),
    eval_every: int = typer.Option(None, "--eval-every", help="Measure --eval-metric every N epochs; keeps RUN/best."),
    eval_metric: str = typer.Option(None, "--eval-metric", help="swd (default, no weights), fid or kid."),
    eval_n: int = typer.Option(None, "--eval-n", help="Images per evaluation (default 1024)."),
    cache_dir: str = typer.Option(None, help="Where decoded data caches live."),
    max_archive_mb: int = typer.Option(None, "--max-archive-mb", help="Stop reading a .zip/.tar --data after this many MB uncompressed (default 16384)."),
    hflip: bool = typer.Option(None, "--hflip/--no-hflip", help="Mirror each real image left-right with probability 1/2 (twice the data for pictures that look right mirrored: faces, not glyphs)."),
    config: Path = typer.Option(None, help="Start from this config.json instead of a preset."),
    grow_from: str = typer.Option(None, "--grow-from", help="Start the grown model (preset modern-128) from this run at half the resolution (preset modern)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    progress: bool = typer.Option(
        True, help="Show progress: a bar on a terminal; in a log or pipe, one plain line every 30 s."
    ),
    sync_bn: bool = typer.Option(
        None, "--sync-bn/--no-sync-bn", help="Under torchrun: BatchNorm statistics over the global batch (default off)."
    ),
    list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit."),
    force_unlock: bool = typer.Option(
        False, "--force-unlock", help="Take over the run's lock left by a trainer on another host (make sure it stopped)."
    ),
) -> None:
    """Train a GAN. Saves sample grids, metrics.csv, plots and checkpoints in the run directory.

    Ctrl-C (or SIGTERM) saves a checkpoint and exits; --resume RUN continues bit for bit.
    """
    from ganime import config as C

    if list_presets:
        for name, p in C.PRESETS.items():
            m = p.model
            grows = f", grows from {p.growth.start}px by a plan" if p.growth.start else ""
            default = " (default)" if name == C.DEFAULT_PRESET else ""
            typer.echo(f"{name:16s} {m.arch} {m.resolution}px z{m.z_dim} batch {p.batch_size} loss {p.loss.loss}{grows}{default}")
        return
    budget = {"epochs": epochs, "kimg": kimg, "minutes": minutes, "max_steps": steps}
    runtime = {
        "device": device, "precision": precision, "channels_last": channels_last, "threads": threads,
        "sample_every": sample_every, "ckpt_every": ckpt_every, "ckpt_minutes": ckpt_minutes, "keep_ckpts": keep,
        "max_rollbacks": max_rollbacks, "on_save_error": on_save_error,
        "eval_every": eval_every, "eval_metric": eval_metric, "eval_n": eval_n, "sync_bn": sync_bn,
    }
    experiment = {
        "data.path": data or None, "data.cache_dir": cache_dir, "batch_size": batch_size,
        "seed": seed, "data.max_archive_mb": max_archive_mb, "grow_from": grow_from,
        "data.hflip": hflip,
    }
    if resume is not None:
        from ganime.checkpoint import read_state, resolve_checkpoint

        saved = C.TrainConfig.from_dict(read_state(resolve_checkpoint(resume))["config"])
        if config is not None:
            raise ConfigError("--resume continues a run with its own config; drop --config")
        grow = {"growth.kimg": _grow_points(grow_at)} if grow_at is not None else {}
        cfg = C.resume_config(saved, **experiment, **grow, **{"model.resolution": resolution}, **budget, **runtime)
        run_dir = resume
    else:
        cfg = C.load_config(config) if config else C.preset(preset)
        if any(v is not None for v in budget.values()):
            budget = {"epochs": epochs or 0, "kimg": kimg or 0.0, "minutes": minutes or 0.0, "max_steps": steps or 0}
            if not any(budget.values()):
                raise ConfigError("the stop budget must be positive: --epochs, --kimg, --minutes or --steps")
        if resolution is None and config is None:
            resolution = _auto_resolution(cfg, data, budget)
        if resolution is not None:
            cfg = C.resize(cfg, resolution)  # a growing preset's blocks and widths follow the size
        if grow_at is not None:
            cfg = C.override(cfg, **{"growth.kimg": _grow_points(grow_at)})
        elif config is None:
            cfg = _long_start(cfg, budget)
        cfg = C.validate(C.override(cfg, **experiment, **budget, **runtime))
        run_dir = out or _default_out(cfg.preset)
    if dry_run:
        typer.echo(json.dumps({"run_dir": str(run_dir), "resume": resume is not None, "config": cfg.to_dict()}, indent=2))
        return
    from ganime.training.loop import train as run_train

    result = run_train(cfg, run_dir, resume=resume is not None, progress=progress, force_unlock=force_unlock)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports for the job
        return
    capped = result.stopped == "cap"
    typer.echo(
        f"{'stopped by ' + result.stopped if result.stopped not in ('done', 'cap') else 'finished'}: step {result.step}, "
        f"epoch {result.epoch}, {result.images_seen / 1000:.1f} kimg in {result.seconds:.0f} s"
        + (f" (the {cfg.model.resolution} px stage had its {cfg.growth.final_kimg:g} kimg: longer makes the faces "
           "alike, docs/quality.md)" if capped else "")
        + f"\nrun:        {result.run_dir}\ncheckpoint: {result.checkpoint}\n"
        f"next:       ganime generate {result.run_dir} --grid {result.run_dir}/grid.png"
        + ("" if capped else f"   |   ganime train --resume {result.run_dir}{_more(cfg, result)}")
    )


def _more(cfg: TrainConfig, result: TrainResult) -> str:
    """The budget flag for `--resume` (a resume always names one): a run stopped before its budget gets that
    budget again, so it goes on to it; a finished one a larger budget in its own unit."""
    stopped = result.stopped != "done"
    if cfg.kimg:
        return f" --kimg {cfg.kimg:g}" if stopped else f" --kimg {round(result.images_seen / 1000 * 1.5, 1):g}"
    if cfg.max_steps:
        return f" --steps {cfg.max_steps if stopped else result.step * 3 // 2}"
    if cfg.minutes and not cfg.epochs:
        return f" --minutes {cfg.minutes:g}"  # a session's minutes: the same again
    return f" --epochs {cfg.epochs if stopped and cfg.epochs > result.epoch else result.epoch + 5}"
