"""Typed run configuration: frozen dataclasses, named presets, JSON in/out.

A run is fully described by one `TrainConfig`; it is written as `config.json` in the run dir and inside
every checkpoint, and resume refuses a checkpoint whose model config differs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from ganime.errors import ConfigError
from ganime.latent import PORTABLE, SCHEMES, TORCH

SUPPORTED_RESOLUTIONS = (16, 32, 64, 128, 256)
# The experiment: a resumed run keeps these as saved (resume_config); its budgets, intervals and runtime may change.
FROZEN_SECTIONS = ("model", "optim", "loss", "data", "batch_size", "seed", "grow_from", "growth")
BUDGET_FIELDS = ("epochs", "kimg", "minutes", "max_steps")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of G and D; rebuilt from this alone (see `models.build`)."""

    arch: str = "dcgan"  # key in models.REGISTRY
    z_dim: int = 128
    resolution: int = 64
    channels: int = 3
    g_width: int = 64  # ngf: channels of G's last hidden layer; earlier layers double it
    d_width: int = 64  # ndf: channels of D's first layer; later layers double it
    d_dropout: float = 0.0  # dropout after each D activation (keras-readme recipe)
    bn_momentum: float = 0.1  # PyTorch convention: running = (1 - m) * running + m * batch
    spectral_norm: bool = False  # spectral norm on D's convs instead of BatchNorm (Miyato et al. 2018)
    num_classes: int = 0  # > 0: class-conditional G and D
    mbstd: int = 0  # > 0: minibatch standard deviation over groups of this size before D's head (ProGAN)
    levels: int = 1  # grown model: 2x blocks on top of a dcgan trunk at resolution / 2^levels (models/grown.py)
    gain_scale: float = 1.0  # grown model: each block's skip gain is this x its parameter (its lr multiplier)
    latents: str = PORTABLE  # seed -> z mapping (ganime.latent): PORTABLE = the same face in torch, ONNX, browser

    # A saved config without these keys predates them: it takes these values, not the defaults of new runs
    # (a generator saved before latent schemes existed keeps torch's mapping, so its seeds keep their faces).
    ABSENT: ClassVar[dict[str, Any]] = {"latents": TORCH}


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings for G and D."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas_g: tuple[float, float] = (0.5, 0.999)
    betas_d: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class LossConfig:
    """The adversarial objective and its regularisers."""

    loss: str = "bce"  # key in losses.LOSSES: bce | nonsat | hinge | rpgan
    r1_gamma: float = 0.0  # R1 penalty weight (Mescheder et al. 2018); 0 = off
    r2_gamma: float = 0.0  # R2: the same penalty on fakes (R3GAN, Huang et al. 2024); 0 = off
    r1_every: int = 16  # lazy R1 (and R2): apply every k D steps, scaled by k (Karras et al. 2020)
    diffaugment: str = ""  # comma list of DiffAugment policies: color,translation,cutout
    ema_beta: float = 0.0  # EMA of G's weights (Karras et al. 2018); 0 = no EMA
    ema_rampup: float = 0.0  # > 0: EMA half-life = this fraction of the steps so far, capped by ema_beta
    # adaptive augmentation (StyleGAN2-ADA, Karras et al. 2020): > 0 = apply each DiffAugment op to an image with
    # probability p, raised while D's sign(real logits) averages above this target (D over-fits), else lowered
    ada_target: float = 0.0
    ada_kimg: float = 100.0  # p can move from 0 to 1 in this many thousand images
    ada_interval: int = 4  # steps between updates of p


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared."""

    # folder, .zip, .tar(.gz), .npz, or a built-in set: "faces" (DiceBear cartoon faces), "emoji";
    # "" = the emoji set (what runs made before the faces set stored)
    path: str = "faces"
    background: tuple[int, int, int] = (255, 255, 255)  # alpha is composited onto this colour
    cache_dir: str = ""  # "" = ~/.cache/ganime/datasets
    hflip: bool = False  # random horizontal flips of real images
    max_archive_mb: int = 16384  # stop reading a .zip/.tar after this much uncompressed data (zip bombs)


@dataclass(frozen=True)
class GrowthConfig:
    """A growth schedule (training/growth.py): the grown model's innermost network trains first, at `start` px,
    then each 2x block joins in turn (progressive growing, Karras et al. 2018), at points planned from the budget."""

    start: int = 0  # resolution of the first stage; 0 = no schedule (the whole network trains from step 0)
    split: str = "time"  # the plan: "time" gives the last stage `final_share` of the budget's time and the earlier
    # ones equal parts of the rest; "images" shows every stage the same number of images (ProGAN)
    final_share: float = 0.7
    final_kimg: float = 0.0  # > 0: the last stage sees at most this many kimg; the time that frees goes to the
    # earlier stages (a long stage at 128 px makes the faces alike: docs/quality.md, retrain 3); 0 = no cap
    kimg: tuple[float, ...] = ()  # grow after this many thousand images, one point per block; () = plan at start
    lr_rampup: float = 0.0  # > 0: after each grow both learning rates rise linearly from 0 to full over this many
    # kimg (the joined block's Adam state starts empty: its first updates are full-size steps); 0 = off

    VARIABLE: ClassVar[tuple[str, ...]] = ("kimg",)  # tuples of any length


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as config.json."""

    preset: str = "tutorial"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 128
    seed: int = 0
    epochs: int = 5  # used when neither kimg nor minutes is set
    kimg: float = 0.0  # stop after this many thousand real images shown
    minutes: float = 0.0  # stop after this much training time
    max_steps: int = 0  # stop after this many steps (tests, smoke runs)
    grid_size: int = 64  # fixed latents for sample grids
    sample_every: int = 0  # extra grid every N steps (0 = only at epoch ends)
    ckpt_every: int = 0  # checkpoint every N steps (0 = only at epoch ends and on exit)
    ckpt_minutes: float = 10.0  # also checkpoint after this many minutes since the last one (0 = off)
    keep_ckpts: int = 3
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto
    channels_last: str = "off"  # on | off | auto
    threads: int = 0  # intra-op threads on CPU (0 = physical cores)
    compile: bool = False  # torch.compile G and D; falls back to eager (with one warning) if it fails
    max_rollbacks: int = 3  # NaN/inf guard: roll back + halve the lr, stop after this many (0 = guard off)
    on_save_error: str = "stop"  # a failed checkpoint write (disk full): stop | continue (keep the last one)
    sync_bn: bool = False  # torchrun: BatchNorm statistics over the global batch, not each rank's shard
    eval_every: int = 0  # measure eval_metric every N epochs, keep RUN/best (0 = off); training/periodic_eval.py
    eval_metric: str = "swd"  # swd (no weights) | fid | kid (need the Inception weights)
    eval_n: int = 1024  # generated and real images per evaluation
    # a run (or checkpoint) at half the resolution whose G, D and G_ema start the trunks of a new `grown` model
    # (models/grown.py; progressive growing): "" = start from random weights
    grow_from: str = ""
    growth: GrowthConfig = field(default_factory=GrowthConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Stable, human-readable JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take defaults."""
        return _from_dict(cls, d)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"expected a JSON object for {cls.__name__}, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {k: v for k, v in getattr(cls, "ABSENT", {}).items() if k not in d}
    for name, value in d.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value)
        elif name in getattr(cls, "VARIABLE", ()):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{cls.__name__}.{name} must be a list, got {value!r}"[:300])
            kwargs[name] = tuple(_checked(cls, name, 0.0, v) for v in value)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise ConfigError(f"{cls.__name__}.{name} must be a list of {len(default)} values, got {value!r}")
            kwargs[name] = tuple(_checked(cls, name, d0, v) for d0, v in zip(default, value))
        else:
            kwargs[name] = _checked(cls, name, default, value)
    return cls(**kwargs)


def _checked(cls: type, name: str, default: Any, value: Any) -> Any:
    # JSON from a file is untrusted: a string or list where a number belongs must fail here, clearly
    kind = type(default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{cls.__name__}.{name} must be {kind.__name__}, got {value!r}"[:300])
    return value


# --- presets -------------------------------------------------------------------------------------------

# The stabilised recipe at 64 px, sized for better images per CPU-minute (docs/benchmarks.md):
_MODERN = TrainConfig(
    preset="modern",
    # DCGAN layout (Radford et al. 2016) at half the tutorial's width: 4x fewer conv FLOPs, so ~3x more
    # steps per CPU-minute, and the G (1.2 M parameters) ships in 2.4 MB of fp16
    # spectral norm on every D conv instead of BatchNorm (Miyato et al. 2018, "Spectral Normalization
    # for GANs"): bounds D's Lipschitz constant, and each real image's logit depends on it alone (R1)
    model=ModelConfig(g_width=32, d_width=32, spectral_norm=True),
    # two time-scale update rule (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule"):
    # D learns 4x faster than G, the SAGAN/BigGAN ratio (Zhang et al. 2019; Brock et al. 2019), at twice their
    # rates: docs/quality.md rows modern vs modern-lr2x at equal images (50 kimg): SWD 64.7 -> 60.9 on faces
    # (seed 1: 64.6 for the old rates), 91.6 -> 78.0 on emoji. Cutout stays: dropping it also won on the
    # 14k faces (57.7) but is untested on small sets, where it is DiffAugment's guard against memorising.
    optim=OptimConfig(lr_g=2e-4, lr_d=8e-4),
    loss=LossConfig(
        # hinge loss (Lim & Ye 2017), used with spectral norm by SNGAN, SAGAN and BigGAN
        loss="hinge",
        # lazy R1 on reals (Mescheder et al. 2018, "Which Training Methods for GANs do actually
        # Converge?"), applied every 16 D steps with weight x16 (Karras et al. 2020, StyleGAN2 sec. 3.1);
        # gamma = StyleGAN2-ADA's heuristic 0.0002 * resolution^2 / batch, rounded
        r1_gamma=0.01,
        r1_every=16,
        # DiffAugment colour + translation + cutout on real and fake, in the D and G steps (Zhao et al.
        # 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the shipped set is 1,446
        # images, where D otherwise memorises the reals
        diffaugment="color,translation,cutout",
        # EMA of G's weights for all sampling and export (Karras et al. 2018, "Progressive Growing of
        # GANs"), half-life ramped up with training (StyleGAN2-ADA's ema_rampup = 0.05, Karras et al. 2020)
        ema_beta=0.999,
        ema_rampup=0.05,
    ),
    # the fake batch is detached for the D step and reused for the G step, and D's weights get no
    # gradient in the G step: built into Trainer.train_step for every preset
    batch_size=64,
    # fp32 or bf16, contiguous or channels_last: timed at start-up and cached per machine
    precision="auto",
    channels_last="auto",
)

# The default (`ganime train` with no --preset): modern's losses, R1, DiffAugment, EMA and rates in a network that
# grows (progressive growing, Karras et al. 2018; training/growth.py). It is the 64 px `modern` network with an
# RGB skip at each size (models/grown.py, 2 levels): a 16 px DCGAN trains first, then the 32 px and 64 px blocks
# join, at points planned from the budget and the measured speed of each stage, so a short run spends its first
# minutes where images are cheap. docs/quality.md "Growing" holds the ablation that chose it on sets it was not
# tuned on.
_GROW = dataclasses.replace(
    _MODERN,
    preset="grow",
    # gain_scale 10: each block's skip gain learns 10x faster than Adam's 2e-4 would move it; at 1 the blocks
    # joined with gains of ~0.1 after 300 steps and drew speckle. At 5 CPU-minutes (docs/quality.md "Growing"):
    # SWD 43.9 -> 26.6 on lorelei, 57.1 -> 40.2 on notionists, 160.4 -> 128.0 on shapes; fixed 64 px `modern`
    # drew 42.7, 48.3 and 127.5 there
    model=ModelConfig(arch="grown", levels=2, g_width=32, d_width=32, spectral_norm=True, gain_scale=10.0),
    # 70 % of the time at the final size, 10-15 % in each earlier stage: at 5 CPU-minutes SWD 26.6 -> 23.9 on
    # lorelei, 40.2 -> 35.5 on notionists, 128.0 -> 114.8 on shapes, 83.5 -> 107.5 on emoji (won 3 of 4); every
    # stage seeing the same images (growth.split "images") and minibatch std in D won no clear majority
    growth=GrowthConfig(start=16, final_share=0.7),
)

DEFAULT_PRESET = "grow"  # what `ganime train` trains without --preset

PRESETS: dict[str, TrainConfig] = {
    # pytorch/examples dcgan + the PyTorch DCGAN tutorial, exactly: latent 128 (nz), ngf = ndf = 64,
    # BCE on logits (numerically the tutorial's Sigmoid + BCELoss), Adam 2e-4 / (0.5, 0.999), batch 128,
    # N(0, 0.02) init, 64 fixed latents for the grids.
    "tutorial": TrainConfig(preset="tutorial"),
    # The Keras "anime fake face" README recipe: D lr 5e-4 with dropout 0.6, G lr 1e-4, batch 25,
    # "momentum 0.9". We read the momentum as Keras `BatchNormalization(momentum=0.9)`, because Keras'
    # Adam has no momentum argument (it has beta_1) and explicitly lowering BN momentum from Keras' 0.99
    # default to 0.9 is the common Keras DCGAN idiom. Keras keeps `running = m * running + (1 - m) * batch`,
    # PyTorch `running = (1 - m) * running + m * batch`, so Keras 0.9 == PyTorch 0.1.
    "keras-readme": TrainConfig(
        preset="keras-readme",
        model=ModelConfig(d_dropout=0.6, bn_momentum=0.1),
        optim=OptimConfig(lr_g=1e-4, lr_d=5e-4),
        batch_size=25,
    ),
    # A small DCGAN that trains in minutes on a laptop CPU (the README's first command uses it).
    "tutorial-small": TrainConfig(
        preset="tutorial-small",
        model=ModelConfig(resolution=32, g_width=32, d_width=32, z_dim=64),
        batch_size=64,
    ),
    "modern": _MODERN,
    "grow": _GROW,
    # 128 px on a CPU: the 64 px `modern` network grown by one 2x block on each side (models/grown.py), with
    # 16 channels at 64 x 64 in G and D: ~1.4x the 64 px network's convolution work per image (a DCGAN doubled
    # in width per stage costs 5x, FastGAN 50x; docs/benchmarks.md "128 px on a CPU"). The same losses, R1,
    # DiffAugment, EMA and TTUR. `--grow-from RUN` starts it from a 64 px `modern` run (progressive growing).
    "modern-128": dataclasses.replace(
        _MODERN,
        preset="modern-128",
        model=ModelConfig(arch="grown", resolution=128, g_width=16, d_width=16, spectral_norm=True),
    ),
    # FastGAN (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
    # Synthesis"): skip-layer excitation in G, two-path down blocks in D, for 128 px (or 256 px with
    # --resolution 256); the same losses, R1, DiffAugment (the FastGAN paper uses it too), EMA and TTUR.
    # r1_gamma stays 0.01: 0.0002 * 128^2 / 32 = 0.1 by the ADA heuristic, FastGAN uses none, so kept small.
    # A GPU recipe: 35x modern-128's work per image (12 vs 117 img/s on 2 AMX cores, docs/benchmarks.md).
    "fastgan-128": dataclasses.replace(
        _MODERN,
        preset="fastgan-128",
        model=ModelConfig(arch="fastgan", resolution=128, g_width=32, d_width=32, spectral_norm=True),
        batch_size=32,
    ),
    # Class-conditional glyphs from `ganime data glyphs` (grayscale, label = the character): the label picks
    # the character, the latent is the style, so one latent draws a whole alphabet (`ganime font`).
    # Conditional DCGAN: label embedding concatenated to z in G, projection discriminator (Miyato & Koyama
    # 2018) with spectral norm; num_classes > 0 turns conditioning on and training sizes it to the data set.
    # The modern recipe's losses, TTUR rates and EMA. No DiffAugment:
    # colour jitter means nothing on ink, cutout erases the strokes that tell characters apart, and translation
    # hides from D the common baseline a font needs; on a 2-font, 5-character set, 200 steps reached 39-78 %
    # nearest-neighbour accuracy with translation and 98-100 % without (tests/fonts/test_learning.py).
    # 32 px keeps CPU training to minutes.
    "glyphs": TrainConfig(
        preset="glyphs",
        model=ModelConfig(
            resolution=32, channels=1, z_dim=64, g_width=32, d_width=32, spectral_norm=True, num_classes=62
        ),
        optim=OptimConfig(lr_g=2e-4, lr_d=8e-4),
        loss=LossConfig(loss="hinge", r1_gamma=0.01, r1_every=16, diffaugment="", ema_beta=0.999, ema_rampup=0.05),
        batch_size=64,
    ),
}


def preset(name: str) -> TrainConfig:
    """A named preset; unknown names list the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None


def doublings(small: int, large: int) -> int:
    """How many 2x blocks lead from `small` px to `large` px (both powers of two): the grown network's levels."""
    return (large // small).bit_length() - 1


def resize(cfg: TrainConfig, resolution: int) -> TrainConfig:
    """`cfg` drawing `resolution` px. A growing recipe keeps its first stage and its widths at 4 x 4: the number of
    2x blocks follows the size, and the widths of the last block scale inversely with it (so --resolution 128
    gives the 128 px `modern-128` channels, 16 at 64 x 64)."""
    if not cfg.growth.start or resolution == cfg.model.resolution:
        return override(cfg, **{"model.resolution": resolution})
    start = cfg.growth.start
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ConfigError(f"resolution {resolution} is not supported; use one of {SUPPORTED_RESOLUTIONS}")
    if resolution <= start:
        raise ConfigError(
            f"preset {cfg.preset} grows from {start} px: give a --resolution above it "
            f"({', '.join(str(r) for r in SUPPORTED_RESOLUTIONS if r > start)}), or pick another --preset"
        )
    m = cfg.model
    scale = lambda w: max(4, w * m.resolution // resolution)
    model = replace(
        m, resolution=resolution, levels=doublings(start, resolution), g_width=scale(m.g_width),
        d_width=scale(m.d_width),
    )
    return replace(cfg, model=model, growth=replace(cfg.growth, kimg=()))


def override(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """Return `cfg` with dotted-path changes, e.g. override(cfg, **{"model.resolution": 32})."""
    for key, value in changes.items():
        if value is None:
            continue
        cfg = _set_path(cfg, key.split("."), value)
    return cfg


def _set_path(obj: Any, path: list[str], value: Any) -> Any:
    name = path[0]
    if not hasattr(obj, name):
        raise ConfigError(f"unknown config field {'.'.join(path)!r} in {type(obj).__name__}")
    if len(path) == 1:
        return replace(obj, **{name: value})
    return replace(obj, **{name: _set_path(getattr(obj, name), path[1:], value)})


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values a user can get wrong; raise ConfigError with what to do."""
    if cfg.model.resolution not in SUPPORTED_RESOLUTIONS:
        raise ConfigError(
            f"resolution {cfg.model.resolution} is not supported; use one of {SUPPORTED_RESOLUTIONS}"
        )
    if cfg.batch_size < 1:
        raise ConfigError("batch size must be at least 1")
    if cfg.epochs < 0 or cfg.kimg < 0 or cfg.minutes < 0 or cfg.max_steps < 0:
        raise ConfigError("epochs, kimg, minutes and max steps must not be negative")
    if cfg.precision not in ("fp32", "bf16", "fp16", "auto"):
        raise ConfigError(f"precision {cfg.precision!r} unknown; use fp32, bf16, fp16 or auto")
    if cfg.channels_last not in ("on", "off", "auto"):
        raise ConfigError(f"channels-last {cfg.channels_last!r} unknown; use on, off or auto")
    if cfg.model.latents not in SCHEMES:
        raise ConfigError(f"latent scheme {cfg.model.latents!r} unknown; use {' or '.join(SCHEMES)}")
    if not 0.0 <= cfg.model.d_dropout < 1.0:
        raise ConfigError("D dropout must be in [0, 1)")
    if cfg.model.mbstd < 0 or (cfg.model.mbstd and cfg.model.arch not in ("dcgan", "grown")):
        raise ConfigError("model.mbstd (minibatch std group size) must be >= 0 and is built into the dcgan D only")
    _check_growth(cfg)
    if cfg.grow_from and cfg.model.arch != "grown":
        raise ConfigError("--grow-from grows a run into the grown model: use --preset modern-128")
    if cfg.loss.r2_gamma < 0 or cfg.loss.r1_gamma < 0:
        raise ConfigError("loss.r1_gamma and loss.r2_gamma must not be negative")
    if cfg.keep_ckpts < 1:
        raise ConfigError("keep at least one checkpoint (--keep 1 or more)")
    if cfg.max_rollbacks < 0 or cfg.on_save_error not in ("stop", "continue"):
        raise ConfigError("--max-rollbacks must be 0 or more and --on-save-error stop or continue")
    if cfg.data.max_archive_mb < 1:
        raise ConfigError("--max-archive-mb must be 1 or more")
    if cfg.ckpt_minutes < 0:
        raise ConfigError("--ckpt-minutes must be 0 (off) or more")
    if cfg.loss.ada_target < 0 or cfg.loss.ada_target >= 1 or cfg.loss.ada_kimg <= 0 or cfg.loss.ada_interval < 1:
        raise ConfigError("loss.ada_target must be in [0, 1) (0 = off), loss.ada_kimg > 0 and loss.ada_interval >= 1")
    if cfg.eval_every < 0 or cfg.eval_n < 2 or cfg.eval_metric not in ("swd", "fid", "kid"):
        raise ConfigError("--eval-every must be >= 0 epochs, --eval-n >= 2, --eval-metric swd, fid or kid")
    return cfg


def _check_growth(cfg: TrainConfig) -> None:
    g, m = cfg.growth, cfg.model
    if not g.start:
        return
    if m.arch != "grown" or g.start < 8 or g.start & (g.start - 1) or m.resolution != g.start * 2**m.levels:
        raise ConfigError(
            f"a growth schedule from {g.start} px needs the grown model with {m.resolution} px = {g.start} px x 2^levels "
            f"(it has arch {m.arch}, levels {m.levels}); set the size with --resolution"
        )
    if len(g.kimg) not in (0, m.levels) or any(b <= a for a, b in zip(g.kimg, g.kimg[1:])) or any(k < 0 for k in g.kimg):
        raise ConfigError(f"growth.kimg needs {m.levels} increasing grow points (thousands of images), got {list(g.kimg)}")
    if g.split not in ("time", "images"):
        raise ConfigError(f"growth.split must be 'time' or 'images', not {g.split!r}")
    if not 0 < g.final_share <= 1:
        raise ConfigError("growth.final_share must be in (0, 1]")
    if g.final_kimg < 0:
        raise ConfigError("growth.final_kimg must be >= 0 kimg (0 = no cap)")
    if g.lr_rampup < 0:
        raise ConfigError("growth.lr_rampup must be >= 0 kimg (0 = off)")


def resume_config(saved: TrainConfig, **overrides: Any) -> TrainConfig:
    """The config a resumed run continues with: `saved` (its checkpoint's) with `overrides` (dotted paths as in
    `override`, None = keep the saved value), validated.

    The experiment (FROZEN_SECTIONS) cannot change: a differing value raises ConfigError naming it (an equal one
    is fine). A stop budget must be given; it replaces the saved one (budget fields not given become 0, off).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    changed = []
    for key, value in given.items():
        if key.split(".")[0] in FROZEN_SECTIONS:
            changed += _differences(key, _get_path(saved, key.split(".")), value)
    if changed:
        raise ConfigError(
            f"cannot resume with {', '.join(changed)}: a resumed run keeps its model, data, recipe, batch size and "
            "seed; only stop budgets, intervals and runtime options may change"
        )
    if not any(k in given for k in BUDGET_FIELDS):
        raise ConfigError("say how much longer to train: --epochs N (total), --kimg N, --minutes N or --steps N (total)")
    budget = {k: given.get(k, type(getattr(saved, k))(0)) for k in BUDGET_FIELDS}
    rest = {k: v for k, v in given.items() if k.split(".")[0] not in FROZEN_SECTIONS}
    return validate(override(saved, **{**rest, **budget}))


def _get_path(obj: Any, path: list[str]) -> Any:
    for name in path:
        if not hasattr(obj, name):
            raise ConfigError(f"unknown config field {'.'.join(path)!r} in {type(obj).__name__}")
        obj = getattr(obj, name)
    return obj


def _differences(key: str, saved: Any, asked: Any) -> list[str]:
    """"key asked (the run's is saved)" for each field where `asked` differs from `saved` (as JSON: a tuple equals
    its list, 1 equals 1.0)."""
    if dataclasses.is_dataclass(saved) and dataclasses.is_dataclass(asked):
        return [
            d for f in fields(saved) for d in _differences(f"{key}.{f.name}", getattr(saved, f.name), getattr(asked, f.name))
        ]
    if _plain(saved) == _plain(asked):
        return []
    return [f"{key} {asked!r} (the run's is {saved!r})"]


def _plain(value: Any) -> Any:
    value = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(value, default=str))


def load_config(path: str | Path) -> TrainConfig:
    """Read a config.json written by a run."""
    path = Path(path)
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
