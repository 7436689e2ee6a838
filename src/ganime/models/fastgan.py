"""FastGAN-style G and D (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis"), for 128x128 and 256x256 images (any supported size works).

Kept from the paper: the generator's nearest-upsample + 3x3 conv + BatchNorm + GLU blocks, alternating with
"comp" blocks of two such convs; skip-layer excitation (SLE), where a 4x4-pooled low-resolution feature map
gates every channel of the map 16x larger (4 -> 64, 8 -> 128, 16 -> 256); the discriminator's two-path
down blocks (strided 4x4 conv path + average-pool 1x1 path, averaged) with SLE from each map to the one 8x
smaller; 4x4 patch logits on an 8x8 map; N(0, 0.02) init.
Left out, and why: the noise injection in G (it draws from the global RNG inside `forward`, so a seed would
no longer give one image); D's self-supervised reconstruction decoders (their loss is LPIPS, which needs
pretrained VGG weights); BatchNorm in D (each image's logit should depend on that image alone, as R1
assumes; spectral norm on every D conv stabilises it instead, Miyato et al. 2018).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ganime.config import ModelConfig
from ganime.errors import ConfigError
from ganime.models.dcgan import init_dcgan_weights
from ganime.models.registry import register

# channels per resolution, as multiples of g_width / d_width (FastGAN's nfc_multi, ngf = ndf = 64 there)
G_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}
D_MULT = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5}


def _ch(width: int, mult: dict[int, float], res: int) -> int:
    return max(1, int(width * mult[res]))


def _check(cfg: ModelConfig) -> None:
    if cfg.num_classes:
        raise ConfigError("the fastgan model is unconditional; use model.arch dcgan for class-conditional runs")
    if cfg.resolution not in G_MULT or cfg.resolution < 16:
        raise ConfigError(f"fastgan supports resolutions 16..256, not {cfg.resolution}")


class UpBlock(nn.Sequential):
    """(in) x s x s -> (out) x 2s x 2s: nearest upsample, 3x3 conv, BatchNorm, GLU."""

    def __init__(self, cin: int, cout: int, comp: bool, momentum: float) -> None:
        layers: list[nn.Module] = [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout * 2, momentum=momentum),
            nn.GLU(dim=1),
        ]
        if comp:  # the "UpBlockComp" of the paper: a second conv at the new size
            layers += [
                nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout * 2, momentum=momentum),
                nn.GLU(dim=1),
            ]
        super().__init__(*layers)


class SLE(nn.Module):
    """Skip-layer excitation: channel gates for a large map from a small one (sec. 3.1 of the paper)."""

    def __init__(self, c_small: int, c_big: int, sn=lambda m: m) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            sn(nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False)),  # (c_small) x 4 x 4 -> (c_big) x 1 x 1
            nn.SiLU(),
            sn(nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False)),
            nn.Sigmoid(),
        )

    def forward(self, small: Tensor, big: Tensor) -> Tensor:
        return big * self.gate(small)


class FastGANGenerator(nn.Module):
    """z (N, z_dim) -> image (N, C, R, R) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check(cfg)
        self.z_dim = cfg.z_dim
        self.num_classes = 0
        w, mom = cfg.g_width, cfg.bn_momentum
        c4 = _ch(w, G_MULT, 4)
        # (z_dim) x 1 x 1 -> (c4) x 4 x 4
        self.init = nn.Sequential(
            nn.ConvTranspose2d(cfg.z_dim, c4 * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(c4 * 2, momentum=mom), nn.GLU(1)
        )
        self.ups = nn.ModuleList()
        self.sles = nn.ModuleDict()
        res = 4
        while res < cfg.resolution:
            cin, cout = _ch(w, G_MULT, res), _ch(w, G_MULT, 2 * res)
            # comp blocks at 8, 32, 128 (odd log2), plain at 16, 64, 256, as in the paper
            self.ups.append(UpBlock(cin, cout, comp=int(math.log2(2 * res)) % 2 == 1, momentum=mom))
            res *= 2
            if res >= 64:  # SLE from the map 16x smaller
                self.sles[str(res)] = SLE(_ch(w, G_MULT, res // 16), cout)
        # (c_R) x R x R -> (C) x R x R
        self.to_rgb = nn.Sequential(nn.Conv2d(_ch(w, G_MULT, cfg.resolution), cfg.channels, 3, 1, 1), nn.Tanh())
        init_dcgan_weights(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.synthesis(self.stem(z))

    def stem(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z -> the 4x4 feature map, the space where truncation pulls toward the mean."""
        return self.init(z[:, :, None, None])

    def synthesis(self, h: Tensor) -> Tensor:
        """The 4x4 feature map from `stem` -> image (it also feeds the 4 -> 64 skip-layer excitation)."""
        feats = {4: h}
        res = 4
        for up in self.ups:
            h = up(h)
            res *= 2
            if str(res) in self.sles:
                h = self.sles[str(res)](feats[res // 16], h)
            feats[res] = h
        return self.to_rgb(h)


class DownBlock(nn.Module):
    """(in) x s x s -> (out) x s/2 x s/2: mean of a 4x4-stride-2 + 3x3 conv path and an avg-pool + 1x1 path."""

    def __init__(self, cin: int, cout: int, sn) -> None:
        super().__init__()
        self.main = nn.Sequential(
            sn(nn.Conv2d(cin, cout, 4, 2, 1, bias=False)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(cout, cout, 3, 1, 1, bias=False)),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(2, 2), sn(nn.Conv2d(cin, cout, 1, 1, 0, bias=False)), nn.LeakyReLU(0.2, inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.direct(x)) / 2


class FastGANDiscriminator(nn.Module):
    """image (N, C, R, R) -> patch logits (N, 25): 4x4 conv logits on the 8x8 map (losses average them)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check(cfg)
        self.num_classes = 0
        sn = nn.utils.parametrizations.spectral_norm
        w, r = cfg.d_width, cfg.resolution
        # (C) x R x R -> (c_R) x R x R
        self.stem = nn.Sequential(sn(nn.Conv2d(cfg.channels, _ch(w, D_MULT, r), 3, 1, 1)), nn.LeakyReLU(0.2, True))
        self.downs = nn.ModuleList()
        self.sles = nn.ModuleDict()
        res = r
        while res > 8:
            # (c_res) x res x res -> (c_res/2) x res/2 x res/2
            self.downs.append(DownBlock(_ch(w, D_MULT, res), _ch(w, D_MULT, res // 2), sn))
            res //= 2
            if res * 8 <= r // 2 and res * 8 >= 16:  # SLE from the map 8x larger (paper: 128 -> 16, ...)
                self.sles[str(res)] = SLE(_ch(w, D_MULT, res * 8), _ch(w, D_MULT, res), sn)
        c8 = _ch(w, D_MULT, 8)
        # (c8) x 8 x 8 -> 1 x 5 x 5
        self.head = nn.Sequential(
            sn(nn.Conv2d(c8, _ch(w, D_MULT, 4), 1, 1, 0, bias=False)),
            nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(_ch(w, D_MULT, 4), 1, 4, 1, 0, bias=False)),
        )
        init_dcgan_weights(self)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.stem(x)
        res = x.shape[-1]
        feats = {res: h}
        for down in self.downs:
            h = down(h)
            res //= 2
            if str(res) in self.sles:
                h = self.sles[str(res)](feats[res * 8], h)
            feats[res] = h
        return self.head(h).flatten(1)


register("fastgan", FastGANGenerator, FastGANDiscriminator)
