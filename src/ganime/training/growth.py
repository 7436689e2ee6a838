"""Growth schedules: a grown model (models/grown.py) trains from its innermost network up, one 2x block at a time.

Progressive growing (Karras et al. 2018) without fade-in: every block joins its trunk by a skip with a learnable
gain that starts at 0, so the moment a block joins, the network draws and judges exactly what it did a step
before, at twice the size. Stage k trains `at_depth(G, depth)` and `at_depth(D, depth)` on the real images
average-pooled to the stage's size; all weights live in one G and one D, with one optimizer each, so a
checkpoint, an exact resume, EMA, export and serving are those of any run.

The plan: where the schedule is not given (growth.kimg empty), `plan` times a few steps of each stage on this
machine and splits the run's budget (minutes, or images) in time: by `split`, either the last stage gets
`final_share` and the earlier ones equal parts of the rest, or every stage sees the same number of images. The
grow points are written into the run's config (they are the experiment: a resumed run keeps them) and into
RUN/plan.json, and printed. A few probe steps can mislead (another process busy while they ran, a cold cache):
the sitting that made the plan compares each stage's speed over its first steps with the probe's, and where it
is more than REPLAN_FACTOR off, plans the rest again from what it measured (StageClock, `replan`), into the
config (so a checkpoint resumes by the new points) and plan.json's "replans". A run of minutes whose last stage is
capped (growth.final_kimg) also re-times its stage every PACE_STEPS steps by the wall clock and plans again when it
is more than PACE_FACTOR off: the cap ends the run once the last stage has had its images, so a stage that runs
faster than its probe would otherwise hand the minutes it saves to no one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ganime import checkpoint as ckpt_io
from ganime.config import GrowthConfig, TrainConfig, doublings

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
PROBE_STEPS = 3  # plain steps timed per stage, after a warm-up step and a regularised one


# A growing run given no --resolution ends at 128 px when its data is that large and its budget is long enough for
# a 128 px stage to add detail rather than noise: the shipped generator's 128 px stage (docs/pretrained.md) came
# after an hour at 64 px. Shorter budgets end at 64 px, where the same minutes give a cleaner picture.
AUTO_128_MINUTES = 60.0
AUTO_128_KIMG = 1500.0  # about what 60 minutes of a 64 px plan shows on 2 cores


def auto_resolution(cfg: TrainConfig, native: Callable[[], int]) -> int:
    """The final size for a growing run whose size the user did not set: 128 px for data of 128 px or more with a
    budget of AUTO_128_MINUTES minutes or AUTO_128_KIMG kimg or more, else the preset's. `native` reads the data's
    size, only when the budget is long enough to need it."""
    long_enough = cfg.minutes >= AUTO_128_MINUTES or cfg.kimg >= AUTO_128_KIMG
    if cfg.growth.start and long_enough and cfg.model.resolution < 128 and native() >= 128:
        return 128
    return cfg.model.resolution


# The first stage follows the budget as well. Growing from 16 px wins the first minutes, but the grown network's
# skips cost it later: at 60 CPU-minutes on one thread (about 30 minutes of `ganime train` on 2 cores) the fixed
# 64 px network drew SWD 9.4 / 10.6 on lorelei / notionists where the 16 px start drew 16.5 / 21.1, while at 15
# CPU-minutes the 16 px start won (15.2 vs 21.4 on lorelei; docs/quality.md "Growing"). A budget of LONG_MINUTES
# minutes or LONG_KIMG kimg or more therefore starts at LONG_START px.
LONG_START = 64
LONG_MINUTES = 15.0
LONG_KIMG = 250.0  # about what 15 minutes of the 64 px network shows on 2 cores
# Grown on to 128 px, the last stage is capped: the shipped faces' 2-hour retrain with 70 % of its time at 128 px
# (672 kimg) drew faces that grew alike after ~150-200 kimg there (recall 0.01, SWD 28.7), where the shipped
# generator, 1,245 kimg at 64 px and 165 at 128, drew 15.4 (docs/quality.md "The shipped generator retrained").
LONG_TOP_KIMG = 160.0


def long_start(cfg: TrainConfig) -> TrainConfig:
    """`cfg` starting at LONG_START px where its budget is long (LONG_MINUTES or LONG_KIMG or more) and its planned
    schedule starts below that; else `cfg`. A final size of LONG_START px then trains the fixed network, which is
    the grown one without its blocks (`modern`'s at 64 px); a larger size grows from it, its last stage capped at
    LONG_TOP_KIMG kimg (the rest of the budget goes to LONG_START px)."""
    g, m = cfg.growth, cfg.model
    long_enough = cfg.minutes >= LONG_MINUTES or cfg.kimg >= LONG_KIMG
    if not (g.start and not g.kimg and long_enough and g.start < LONG_START <= m.resolution):
        return cfg
    if m.resolution == LONG_START:
        model = dataclasses.replace(m, arch="dcgan", levels=1, gain_scale=1.0)
        return dataclasses.replace(cfg, model=model, growth=dataclasses.replace(g, start=0))
    return dataclasses.replace(
        cfg, model=dataclasses.replace(m, levels=doublings(LONG_START, m.resolution)),
        growth=dataclasses.replace(g, start=LONG_START, final_kimg=LONG_TOP_KIMG)
    )


def final_stage_end(cfg: TrainConfig) -> float:
    """The images after which a capped last stage (growth.final_kimg) has had its share: the run stops there,
    whatever its budget left (inf without a cap or before the plan is made)."""
    g = cfg.growth
    if not (g.start and g.final_kimg and g.kimg):
        return math.inf
    return (g.kimg[-1] + g.final_kimg) * 1000


def depth_at(cfg: TrainConfig, images_seen: int) -> int:
    """How many blocks below the full network the run trains after `images_seen` images (0 = all of it)."""
    g = cfg.growth
    if not g.start:
        return 0
    levels = cfg.model.levels
    if not g.kimg:  # not planned yet (timing probes): the first stage
        return levels
    return levels - sum(images_seen >= k * 1000 for k in g.kimg)


def lr_ramp(cfg: TrainConfig, images_seen: int) -> float:
    """The learning rates' factor after `images_seen` images: rising linearly from one batch's worth to 1 over
    growth.lr_rampup kimg after each grow point passed (1 before the first grow, and with no ramp)."""
    g = cfg.growth
    passed = [k for k in g.kimg if images_seen >= k * 1000]
    if not (g.start and g.lr_rampup and passed):
        return 1.0
    return min(1.0, (images_seen - passed[-1] * 1000 + cfg.batch_size) / (g.lr_rampup * 1000))


@contextmanager
def scaled_lr(opt: torch.optim.Optimizer, factor: float) -> Iterator[None]:
    """Within the block, `opt` steps at `factor` x its learning rates; they are restored exactly after, so the
    optimizer's saved state (and the divergence guard's lowered rates) keep the full ones."""
    if factor == 1.0:
        yield
        return
    full = [group["lr"] for group in opt.param_groups]
    for group in opt.param_groups:
        group["lr"] *= factor
    try:
        yield
    finally:
        for group, lr in zip(opt.param_groups, full):
            group["lr"] = lr


@dataclass(frozen=True)
class Stage:
    """One stage of a plan: `resolution` px from `start_kimg` to `end_kimg` (inf for the last)."""

    resolution: int
    start_kimg: float
    end_kimg: float
    img_per_s: float  # measured when the plan was made (0 = not measured)

    def minutes(self, end_kimg: float) -> float:
        """Estimated minutes of this stage in a run that ends at `end_kimg`."""
        stop = min(self.end_kimg, end_kimg)
        return max(0.0, stop - self.start_kimg) * 1000 / self.img_per_s / 60 if self.img_per_s else math.nan


def stages(cfg: TrainConfig, speeds: list[float] | None = None) -> list[Stage]:
    """The run's stages, smallest first; `speeds` (img/s per stage, smallest first) where measured."""
    g, levels = cfg.growth, cfg.model.levels
    points = [0.0, *g.kimg, final_stage_end(cfg) / 1000]  # inf: the last stage runs to the budget's end
    speeds = speeds or [0.0] * (levels + 1)
    return [Stage(g.start * 2**i, points[i], points[i + 1], speeds[i]) for i in range(levels + 1)]


def budget_images(cfg: TrainConfig, steps_per_epoch: int) -> float:
    """The images the run's step budget allows (steps, kimg or epochs); inf when only minutes are set."""
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps * cfg.batch_size)
    if cfg.kimg:
        limits.append(cfg.kimg * 1000)
    if not limits and not cfg.minutes:
        limits.append(max(1, cfg.epochs) * steps_per_epoch * cfg.batch_size)
    return min(limits) if limits else math.inf


def stage_shares(growth: GrowthConfig, speeds: list[float]) -> list[float]:
    """Each stage's share of the budget's time at the measured `speeds` (img/s, smallest stage first): split "time"
    gives the last `final_share` and the earlier ones equal parts of the rest; "images" gives each stage time in
    inverse proportion to its speed, so that every stage sees the same number of images."""
    n = len(speeds)
    if n == 1:
        return [1.0]
    if growth.split == "images":
        inverse = [1 / v for v in speeds]
        return [w / sum(inverse) for w in inverse]
    return [(1 - growth.final_share) / (n - 1)] * (n - 1) + [growth.final_share]


def plan_points(
    cfg: TrainConfig, speeds: list[float], steps_per_epoch: int, stage: int = 0, seen: float = 0.0,
    elapsed: float = 0.0,
) -> tuple[float, ...]:
    """Grow points (kimg) that give the stages their shares of the budget's time at the measured `speeds`.

    A re-plan starts at stage `stage` with `seen` images and `elapsed` seconds behind it: the grow points before
    that stage stay (cfg's), the stage ends when the time its share gives it is over (at once if it already is),
    and the later stages keep their shares."""
    base = shares = stage_shares(cfg.growth, speeds)
    k = stage
    images = budget_images(cfg, steps_per_epoch)
    cap = cfg.growth.final_kimg * 1000

    def budget_seconds(shares: list[float]) -> float:
        """The budget's time T in seconds: the minutes, or the T that spends the images at these shares."""
        end_k = sum(shares[: k + 1])  # stage k ends at end_k x T
        later = sum(s * v for s, v in zip(shares[k + 1 :], speeds[k + 1 :]))  # images per second of T after stage k
        seconds = cfg.minutes * 60 if cfg.minutes else math.inf
        if not math.isinf(images):
            # the T that spends the images: seen + speed_k x (end_k x T - elapsed) + later x T = images
            t_images = (images - seen + speeds[k] * elapsed) / (speeds[k] * end_k + later)
            if end_k * t_images < elapsed:  # stage k's time is over already: the rest go to the later stages
                t_images = (images - seen) / later if later else math.inf
            seconds = min(seconds, t_images)
        return seconds

    def with_last(last: float) -> list[float]:  # the last stage's share set, the earlier ones in proportion
        rest = 1 - base[-1]
        earlier = [x / rest for x in base[:-1]] if rest > 0 else [1 / (len(base) - 1)] * (len(base) - 1)
        return [x * (1 - last) for x in earlier] + [last]

    def last_images(last: float) -> float:
        sh = with_last(last)
        return last * budget_seconds(sh) * speeds[-1]

    seconds = budget_seconds(shares)
    if cap and k < len(speeds) - 1 and not math.isinf(seconds) and last_images(base[-1]) > cap:
        # the last stage may see at most `cap` images: the share that spends exactly them (its images rise with
        # its share, on a minutes or an images budget alike: bisect), the time it frees to the earlier stages
        lo, hi = 0.0, base[-1]
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if last_images(mid) < cap else (lo, mid)
        shares = with_last(lo)
        seconds = budget_seconds(shares)
    end_k = sum(shares[: k + 1])
    points = list(cfg.growth.kimg[:k])
    at = seen + speeds[k] * max(0.0, end_k * seconds - elapsed)
    for i in range(k, len(speeds) - 1):
        if i > k:
            at += shares[i] * seconds * speeds[i]
        # grow points must rise: a stage whose time is over still gets one step's worth of a thousandth of a kimg
        points.append(max(round(at / 1000, 3), round(points[-1] + 0.001, 3) if points else 0.0))
    return tuple(points)


REPLAN_FACTOR = 2.0  # a stage running this many times faster or slower than its probe gets the rest re-planned
REPLAN_STEPS = 5  # steps a stage runs (after its first) before its speed is compared with the probe's
# A capped run of minutes re-times its stage every PACE_STEPS steps by the wall clock (loading, grids and
# checkpoints included: what the minutes pay for) and plans again when it runs more than PACE_FACTOR off. On
# 2 cores a 64 px stage ran at ~300 img/s where its 3 probe steps said 197: without this its capped 128 px stage
# started, and the run ended, half an hour early.
PACE_STEPS = 250
PACE_FACTOR = 1.1


@dataclass
class StageClock:
    """Times the stage that a newly planned run trains, so that a plan made from a misleading probe (the machine
    busy for those few steps, or warming up) is made again from what the run measures (see `replan`)."""

    speeds: list[float]  # img/s the plan was made for, smallest stage first
    checked: set[int] = dataclasses.field(default_factory=set)  # the depths already compared
    depth: int | None = None
    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    pace_depth: int | None = None
    pace_from: tuple[float, int] = (0.0, 0)  # wall time and images seen after the stage's first step
    pace_steps: int = 0

    def add(self, depth: int, seconds: float, images: int) -> float | None:
        """Count one step of `seconds` at `depth`; returns the stage's img/s once, after its first REPLAN_STEPS
        steps past the first (which warms up), when it is due to be compared with the plan."""
        if depth != self.depth:
            self.depth, self.steps, self.seconds, self.images = depth, 0, 0.0, 0
            return None
        if depth in self.checked:
            return None
        self.steps, self.seconds, self.images = self.steps + 1, self.seconds + seconds, self.images + images
        if self.steps < REPLAN_STEPS:
            return None
        self.checked.add(depth)
        return self.images / max(self.seconds, 1e-9)

    def pace(self, depth: int, now: float, images_seen: int) -> float | None:
        """Count one step at `depth` that ended at wall time `now` with `images_seen`; every PACE_STEPS steps of
        the stage, returns its img/s by the wall clock since its first step (which warms up)."""
        if depth != self.pace_depth:
            self.pace_depth, self.pace_from, self.pace_steps = depth, (now, images_seen), 0
            return None
        self.pace_steps += 1
        if self.pace_steps % PACE_STEPS:
            return None
        since, seen = self.pace_from
        return (images_seen - seen) / max(now - since, 1e-9)


def replan(
    cfg: TrainConfig, clock: StageClock, measured: float, seen: float, elapsed: float, steps_per_epoch: int,
    tolerance: float | None = None,
) -> tuple[TrainConfig, list[float]] | None:
    """The config with new grow points, and the speeds they were planned with, when the stage at `clock.depth`
    runs at `measured` img/s, more than `tolerance` (default REPLAN_FACTOR) times off the speed the plan assumed;
    None when it is near it (or is the last stage, which has no grow point left to move). Every stage's speed is
    scaled by the same factor: what slowed or sped the probe (another process, a cold cache) slowed or sped them
    all (the stages before it keep theirs)."""
    stage = cfg.model.levels - clock.depth
    factor, tolerance = measured / clock.speeds[stage], tolerance or REPLAN_FACTOR
    if stage == cfg.model.levels or 1 / tolerance <= factor <= tolerance:
        return None
    speeds = [v * factor if i >= stage else v for i, v in enumerate(clock.speeds)]
    points = plan_points(cfg, speeds, steps_per_epoch, stage=stage, seen=seen, elapsed=elapsed)
    return dataclasses.replace(cfg, growth=dataclasses.replace(cfg.growth, kimg=points)), speeds


def describe(cfg: TrainConfig, speeds: list[float] | None = None) -> list[str]:
    """The plan as lines for the log and the CLI."""
    total = budget_images(cfg, 1) / 1000 if (cfg.max_steps or cfg.kimg) else math.inf
    lines = []
    for st in stages(cfg, speeds):
        end = "end" if math.isinf(st.end_kimg) else f"{st.end_kimg:g} kimg"
        est = st.minutes(total) if not math.isinf(total) or not math.isinf(st.end_kimg) else math.nan
        speed = f", {st.img_per_s:.0f} img/s" if st.img_per_s else ""
        when = f" (~{est:.1f} min)" if not math.isnan(est) else ""
        lines.append(f"  {st.resolution:>3} px: {st.start_kimg:g} kimg -> {end}{speed}{when}")
    return lines


def write_plan(run_dir: Path, cfg: TrainConfig, speeds: list[float] | None, replans: list[dict] | None = None) -> None:
    """RUN/plan.json: the stages, what they were planned for, and the speeds measured; `replans`: the plans made
    again while the run trained (what each stage was expected to run at, what it ran at, and where)."""
    data = {
        "budget": {"minutes": cfg.minutes, "kimg": cfg.kimg, "max_steps": cfg.max_steps, "epochs": cfg.epochs},
        "split": cfg.growth.split,
        "final_share": cfg.growth.final_share,
        "final_kimg": cfg.growth.final_kimg,
        "stages": [dataclasses.asdict(s) | {"end_kimg": None if math.isinf(s.end_kimg) else s.end_kimg}
                   for s in stages(cfg, speeds)],
        **({"replans": replans} if replans else {}),
    }
    ckpt_io.atomic_write_json(run_dir / PLAN_FILE, data)


def read_plan(run_dir: Path) -> dict | None:
    """RUN/plan.json, or None."""
    try:
        return json.loads((run_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return None


def measure_speeds(trainer, steps: int = PROBE_STEPS, clock=time.perf_counter) -> list[float]:
    """Images/s of each stage of `trainer`'s run, smallest first (one figure without a growth schedule), then the
    trainer goes back to exactly where it was (weights, optimizers, RNG streams, step). Per stage: a warm-up
    step, then D's lazily regularised step (R1/R2, one in `loss.r1_every`) and `steps` plain ones are timed and
    weighted as training runs them. Timing only regularised steps (the trainer's step stood still at 0) read
    0.78x the true speed at 64 px and 0.68x at 128 px (benchmarks/probe_accuracy.py): a capped 2-hour run that
    trusted it would have ended ~35 minutes early. `clock`: wall time (the budget a user gives), or process time
    for figures that must not depend on what else the machine runs (benchmarks/growth_ablation.py)."""
    snap = trainer.snapshot()
    real, labels = trainer.loader.batch(0, 0)
    every = max(1, trainer.cfg.loss.r1_every)
    speeds = []
    try:
        for depth in range(trainer.cfg.model.levels if trainer.cfg.growth.start else 0, -1, -1):
            trainer.force_depth(depth)
            trainer.step = 0  # a regularised step
            trainer.train_step(real, labels)  # warm-up
            t0 = clock()
            trainer.train_step(real, labels)
            regularised = clock() - t0
            trainer.step = 1  # plain steps (regularised too when r1_every is 1)
            t0 = clock()
            for _ in range(steps):
                trainer.train_step(real, labels)
            plain = (clock() - t0) / steps
            speeds.append(real.shape[0] * every / (regularised + (every - 1) * plain))
    finally:
        trainer.force_depth(None)
        trainer.restore_snapshot(snap)
    return speeds
