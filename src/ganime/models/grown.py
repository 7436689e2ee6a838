"""DCGAN grown by 2x blocks: a 64 px `modern` network with a 128 px top, or a 16 px DCGAN with two (any size >= 16).

Growing (Karras et al. 2018, "Progressive Growing of GANs"): the network at half the resolution is kept whole
as the trunk, and one block at full resolution is added on each side. The blocks join the trunk by skips, as
StyleGAN2's skip generator and ProGAN's fade-in do (Karras et al. 2020, sec. 4.1):

- G: image = tanh(up2(trunk's RGB logits) + gain * top(trunk's last features)); the top is a stride-2
  transposed conv to half the trunk's last width + BatchNorm + ReLU, then a stride-2 transposed conv to RGB.
- D: features = LeakyReLU(trunk's first conv(avgpool2(image))) + gain * top(image); the top is two stride-2
  convs (to d_width, then to the trunk's first width).

Both gains are learnable scalars starting at 0 (the "ReZero" init, Bachlechner et al. 2021), each the parameter
times `gain_scale`: Adam moves a parameter by about its learning rate per step, so at scale 1 a gain needs
thousands of steps to reach 0.5; a scale > 1 multiplies its learning rate (ProGAN's equalised learning rate). At step 0 the
grown G draws exactly its trunk's image upsampled 2x and D judges the image downsampled 2x, so a network grown
from a trained half-resolution run (`grow_state`) starts where that run stopped and only learns the detail.
Trained from scratch the same network is the 128 px `modern` recipe: its cost per image is ~1.4x the 64 px
network's (1.06 vs 0.75 GFLOP per training image), where a DCGAN doubled in width per stage costs 5x
(docs/benchmarks.md, "128 px on a CPU").

Channel plan with g_width = d_width = w: the trunk is the dcgan network at resolution / 2 with width 2w, and
the top blocks have w channels at resolution / 2 (so at 128 px with w = 16: 256-128-64-32 in the trunk, 16 at
64 x 64, RGB at 128 x 128).

`levels` > 1 nests: the trunk is itself a grown network at half the resolution with `levels - 1` blocks, down
to a dcgan network at resolution / 2^levels. At 64 px with w = 32 and 2 levels: a 16 px DCGAN (256-128) and
blocks of 64 channels at 16 x 16 and 32 at 32 x 32, the same channels as the 64 px `modern` network. A growth
schedule (training/growth.py) trains the innermost network first and each block in turn: `at_depth(net, k)` is
the network k blocks down, which draws (G) or judges (D) images at resolution / 2^k. In D the outer block's
features join the inner block's first features (`entry`), as the first block's join the dcgan trunk's.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganime.config import ModelConfig
from ganime.errors import ConfigError
from ganime.models.dcgan import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from ganime.models.registry import register


def trunk_config(cfg: ModelConfig) -> ModelConfig:
    """The config of the trunk: half the resolution, twice the widths (a `modern` run at 64 px for 128); a grown
    config with one level less when `levels` > 1, else dcgan."""
    if cfg.levels < 1 or cfg.resolution // 2**cfg.levels < 8:
        raise ConfigError(
            f"the grown model needs levels >= 1 and a trunk of 8 px or more, not {cfg.resolution} px with "
            f"{cfg.levels} levels"
        )
    deeper = cfg.levels > 1
    return dataclasses.replace(
        cfg, arch="grown" if deeper else "dcgan", levels=cfg.levels - 1 if deeper else 1,
        resolution=cfg.resolution // 2, g_width=2 * cfg.g_width, d_width=2 * cfg.d_width,
    )


def _trunk(cfg: ModelConfig, grown: type, dcgan: type) -> nn.Module:
    t = trunk_config(cfg)
    return grown(t) if t.arch == "grown" else dcgan(t)


def at_depth(net: nn.Module, depth: int) -> nn.Module:
    """The network `depth` blocks below `net` (a grown G or D; 0 = `net` itself): it works at net's resolution
    / 2^depth with the weights it shares with `net`."""
    for _ in range(depth):
        if not isinstance(net, (GrownGenerator, GrownDiscriminator)):
            raise ConfigError(f"this network has fewer than {depth} grown blocks")
        net = net.trunk
    return net


def depth_of(net: nn.Module) -> int:
    """How many grown blocks `net` has (0 for a dcgan network)."""
    return 1 + depth_of(net.trunk) if isinstance(net, (GrownGenerator, GrownDiscriminator)) else 0


class GrownGenerator(nn.Module):
    """z (N, z_dim) -> image (N, C, R, R) in [-1, 1]: the dcgan G at R/2 plus a skip-joined 2x top block."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = _trunk(cfg, GrownGenerator, DCGANGenerator)
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        cin, w = 2 * cfg.g_width, cfg.g_width
        self.top = nn.Sequential(
            # (2w) x R/4 x R/4 -> (w) x R/2 x R/2
            nn.ConvTranspose2d(cin, w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w, momentum=cfg.bn_momentum),
            nn.ReLU(True),
            # (w) x R/2 x R/2 -> (C) x R x R
            nn.ConvTranspose2d(w, cfg.channels, 4, 2, 1, bias=False),
        )
        init_dcgan_weights(self.top)
        self.gain = nn.Parameter(torch.zeros(()))
        self.gain_scale = cfg.gain_scale  # the gain is gain_scale x the parameter (a learning-rate multiplier)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.synthesis(self.stem(z, labels))

    def stem(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (and label) -> the trunk's first 4x4 feature map, where truncation pulls toward the mean."""
        return self.trunk.stem(z, labels)

    def synthesis(self, h: Tensor) -> Tensor:
        """The 4x4 feature map from `stem` -> image."""
        return torch.tanh(self.parts(h)[1])

    def parts(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The 4x4 map -> (the last hidden features, (w) x R/2 x R/2; the RGB logits at R, before tanh)."""
        feats, low = _generator_parts(self.trunk, h)  # (2w) x R/4 x R/4; RGB logits at R/2
        up = F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)
        hidden = self.top[:3](feats)
        return hidden, up + self.gain_scale * self.gain * self.top[3](hidden)


def _generator_parts(g: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
    if isinstance(g, GrownGenerator):
        return g.parts(h)
    feats = g.main[3:-2](h)  # a dcgan G: (ngf) x R/2 x R/2
    return feats, g.main[-2](feats)


class GrownDiscriminator(nn.Module):
    """image (N, C, R, R) -> logits (N,): a skip-joined 2x top block, then the dcgan D at R/2 from its 2nd conv."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = _trunk(cfg, GrownDiscriminator, DCGANDiscriminator)
        self.num_classes = cfg.num_classes
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        w, cout = cfg.d_width, 2 * cfg.d_width
        layers: list[nn.Module] = [
            # (C) x R x R -> (w) x R/2 x R/2
            sn(nn.Conv2d(cfg.channels, w, 4, 2, 1, bias=False)),
            nn.LeakyReLU(0.2, inplace=True),
            # (w) x R/2 x R/2 -> (2w) x R/4 x R/4, the trunk's first features
            sn(nn.Conv2d(w, cout, 4, 2, 1, bias=False)),
        ]
        if not cfg.spectral_norm:
            layers.append(nn.BatchNorm2d(cout, momentum=cfg.bn_momentum))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.top = nn.Sequential(*layers)
        init_dcgan_weights(self.top)
        self.gain = nn.Parameter(torch.zeros(()))
        self.gain_scale = cfg.gain_scale  # the gain is gain_scale x the parameter (a learning-rate multiplier)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.rest(self.entry(x), x, labels)

    def entry(self, x: Tensor) -> Tensor:
        """image (C x R x R) -> the first features, (w) x R/2 x R/2: where an outer block joins."""
        return self.top[:2](x)

    def rest(self, first: Tensor, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The first features (from `entry`, plus what an outer block adds) and the image -> logits."""
        low = F.avg_pool2d(x, 2)
        return _judge(self.trunk, _entry(self.trunk, low) + self.gain_scale * self.gain * self.top[2:](first), low, labels)


def _entry(d: nn.Module, x: Tensor) -> Tensor:
    return d.entry(x) if isinstance(d, GrownDiscriminator) else d.features[: _first_block(d)](x)


def _judge(d: nn.Module, first: Tensor, x: Tensor, labels: Tensor | None) -> Tensor:
    if isinstance(d, GrownDiscriminator):
        return d.rest(first, x, labels)
    return d.judge(d.features[_first_block(d) :](first), labels)


def _first_block(d: DCGANDiscriminator) -> int:
    # where a dcgan D's first conv block ends: conv, activation[, dropout]
    return 3 if len(d.features) > 2 and isinstance(d.features[2], nn.Dropout) else 2


def grow_state(low: dict[str, Tensor], net: nn.Module, what: str) -> dict[str, Tensor]:
    """`net`'s (a GrownGenerator or GrownDiscriminator) state dict with its trunk taken from `low`, the state
    dict of the dcgan network at half the resolution; the top block keeps its fresh weights and a 0 gain."""
    state = net.state_dict()
    trunk = {k[len("trunk.") :]: k for k in state if k.startswith("trunk.")}
    missing = sorted(set(trunk) - set(low))
    extra = sorted(set(low) - set(trunk))
    if missing or extra:
        raise ConfigError(
            f"cannot grow {what}: the half-resolution network does not match the grown model's trunk "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); grow a 'modern'-layout run at half the resolution "
            "with twice the widths"
        )
    for name, key in trunk.items():
        if low[name].shape != state[key].shape:
            raise ConfigError(
                f"cannot grow {what}: {name} is {tuple(low[name].shape)} in the half-resolution run but "
                f"{tuple(state[key].shape)} in the grown model; the run's widths must be twice the grown model's"
            )
        state[key] = low[name].to(state[key].dtype)
    return state


register("grown", GrownGenerator, GrownDiscriminator)
