"""DCGAN (Radford et al. 2016) exactly as pytorch/examples `dcgan/main.py`, for any power-of-two size.

At 64x64 with ngf = ndf = 64 this is the tutorial's network layer for layer; other sizes add or drop
stride-2 stages. Options used by other recipes: D dropout (keras-readme), spectral norm in D instead of
BatchNorm, class conditioning (label embedding concatenated to z; projection term in D, Miyato & Koyama 2018).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganime.config import ModelConfig
from ganime.models.registry import register


def _stages(resolution: int) -> int:
    # number of stride-2 (de)convolutions between 4x4 and `resolution`
    return int(math.log2(resolution)) - 2


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convs, N(1, 0.02) for BatchNorm scales, zero biases (the tutorial's `weights_init`)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z (N, z_dim) -> image (N, C, R, R) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.z_dim = cfg.z_dim
        self.num_classes = cfg.num_classes
        n = _stages(cfg.resolution)
        ch = cfg.g_width * 2 ** (n - 1)  # 512 at 64 px with ngf 64
        in_dim = cfg.z_dim
        if cfg.num_classes:
            self.embed = nn.Embedding(cfg.num_classes, cfg.z_dim)
            in_dim = 2 * cfg.z_dim
        layers: list[nn.Module] = [
            # (in_dim) x 1 x 1 -> (ch) x 4 x 4
            nn.ConvTranspose2d(in_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch, momentum=cfg.bn_momentum),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            # (ch) x s x s -> (ch/2) x 2s x 2s
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2, momentum=cfg.bn_momentum),
                nn.ReLU(True),
            ]
            ch //= 2
        # (ngf) x R/2 x R/2 -> (C) x R x R
        layers += [nn.ConvTranspose2d(ch, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_dcgan_weights(self)
        if cfg.num_classes:
            # the class code on z's scale (N(0, 1)): at the convs' N(0, 0.02) it is ~50x weaker than z and
            # G takes thousands of steps to start using the label
            nn.init.normal_(self.embed.weight, 0.0, 1.0)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.synthesis(self.stem(z, labels))

    def stem(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (and label) -> the first 4x4 feature map, the space where truncation pulls toward the mean."""
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.main[:3](z[:, :, None, None])

    def synthesis(self, h: Tensor) -> Tensor:
        """The 4x4 feature map from `stem` -> image."""
        return self.main[3:](h)


class MinibatchStd(nn.Module):
    """Append one channel: the mean over features and pixels of the standard deviation across a group of
    images (Karras et al. 2018, "Progressive Growing of GANs", sec. 3), so D can see a batch lacking variety.
    Groups of `group` images (or the whole batch where it does not divide)."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, h: Tensor) -> Tensor:
        n, c, hh, ww = h.shape
        g = self.group if n % self.group == 0 else n
        y = h.float().reshape(g, n // g, c, hh, ww)  # group member, group, ...
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
        s = std.to(h.dtype).repeat(g)[:, None, None, None].expand(n, 1, hh, ww)
        return torch.cat([h, s], dim=1)


class DCGANDiscriminator(nn.Module):
    """image (N, C, R, R) -> logits (N,) (the tutorial's Sigmoid is folded into the BCE-with-logits loss)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        n = _stages(cfg.resolution)
        ch = cfg.d_width

        def act() -> list[nn.Module]:
            out: list[nn.Module] = [nn.LeakyReLU(0.2, inplace=True)]
            if cfg.d_dropout:
                out.append(nn.Dropout(cfg.d_dropout))
            return out

        # (C) x R x R -> (ndf) x R/2 x R/2, no normalisation on the input layer
        layers: list[nn.Module] = [sn(nn.Conv2d(cfg.channels, ch, 4, 2, 1, bias=False)), *act()]
        for _ in range(n - 1):
            # (ch) x s x s -> (2ch) x s/2 x s/2
            layers.append(sn(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False)))
            if not cfg.spectral_norm:
                layers.append(nn.BatchNorm2d(ch * 2, momentum=cfg.bn_momentum))
            layers += act()
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.mbstd = MinibatchStd(cfg.mbstd) if cfg.mbstd else None
        # (8 ndf [+1]) x 4 x 4 -> 1 x 1 x 1
        self.head = sn(nn.Conv2d(ch + (1 if cfg.mbstd else 0), 1, 4, 1, 0, bias=False))
        if cfg.num_classes:
            self.embed = sn(nn.Embedding(cfg.num_classes, ch))
        init_dcgan_weights(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.judge(self.features(x), labels)

    def judge(self, h: Tensor, labels: Tensor | None = None) -> Tensor:
        """The last features (8 ndf x 4 x 4) -> logits: minibatch std, the head, the class projection."""
        out = self.head(self.mbstd(h) if self.mbstd is not None else h).flatten()
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            # projection discriminator: <embed(y), sum-pooled features>
            out = out + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        return out


register("dcgan", DCGANGenerator, DCGANDiscriminator)
