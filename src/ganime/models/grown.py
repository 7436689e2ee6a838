"""DCGAN grown by one 2x block: a 64 px `modern` network with a 128 px top (for any power-of-two size >= 16).

Growing (Karras et al. 2018, "Progressive Growing of GANs"): the network at half the resolution is kept whole
as the trunk, and one block at full resolution is added on each side. The blocks join the trunk by skips, as
StyleGAN2's skip generator and ProGAN's fade-in do (Karras et al. 2020, sec. 4.1):

- G: image = tanh(up2(trunk's RGB logits) + gain * top(trunk's last features)); the top is a stride-2
  transposed conv to half the trunk's last width + BatchNorm + ReLU, then a stride-2 transposed conv to RGB.
- D: features = LeakyReLU(trunk's first conv(avgpool2(image))) + gain * top(image); the top is two stride-2
  convs (to d_width, then to the trunk's first width).

Both gains are learnable scalars starting at 0 (the "ReZero" init, Bachlechner et al. 2021): at step 0 the
grown G draws exactly its trunk's image upsampled 2x and D judges the image downsampled 2x, so a network grown
from a trained half-resolution run (`grow_state`) starts where that run stopped and only learns the detail.
Trained from scratch the same network is the 128 px `modern` recipe: its cost per image is ~1.4x the 64 px
network's (1.06 vs 0.75 GFLOP per training image), where a DCGAN doubled in width per stage costs 5x
(docs/benchmarks.md, "128 px on a CPU").

Channel plan with g_width = d_width = w: the trunk is the dcgan network at resolution / 2 with width 2w, and
the top blocks have w channels at resolution / 2 (so at 128 px with w = 16: 256-128-64-32 in the trunk, 16 at
64 x 64, RGB at 128 x 128).
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
    """The dcgan config of the trunk: half the resolution, twice the widths (a `modern` run at 64 px for 128)."""
    if cfg.resolution < 16:
        raise ConfigError(f"the grown model needs a resolution of 16 or more, not {cfg.resolution}")
    return dataclasses.replace(
        cfg, arch="dcgan", resolution=cfg.resolution // 2, g_width=2 * cfg.g_width, d_width=2 * cfg.d_width
    )


class GrownGenerator(nn.Module):
    """z (N, z_dim) -> image (N, C, R, R) in [-1, 1]: the dcgan G at R/2 plus a skip-joined 2x top block."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = DCGANGenerator(trunk_config(cfg))
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

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.synthesis(self.stem(z, labels))

    def stem(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (and label) -> the trunk's first 4x4 feature map, where truncation pulls toward the mean."""
        return self.trunk.stem(z, labels)

    def synthesis(self, h: Tensor) -> Tensor:
        """The 4x4 feature map from `stem` -> image."""
        feats = self.trunk.main[3:-2](h)  # (2w) x R/4 x R/4
        low = self.trunk.main[-2](feats)  # RGB logits at R/2, before the trunk's tanh
        up = F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.tanh(up + self.gain * self.top(feats))


class GrownDiscriminator(nn.Module):
    """image (N, C, R, R) -> logits (N,): a skip-joined 2x top block, then the dcgan D at R/2 from its 2nd conv."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = DCGANDiscriminator(trunk_config(cfg))
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
        # where the trunk's first conv block ends (conv, activation[, dropout])
        self._first = 3 if cfg.d_dropout else 2

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        t = self.trunk
        h = t.features[: self._first](F.avg_pool2d(x, 2)) + self.gain * self.top(x)
        return t.judge(t.features[self._first :](h), labels)


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
