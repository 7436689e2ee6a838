"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"), at a fixed or an
adaptive probability (StyleGAN2-ADA, Karras et al. 2020: `AdaptiveP`).

Pure, differentiable functions of an NCHW batch in [-1, 1]. They are applied with the same policy to real and
fake images every time D sees them (D step and G step), so D never sees an un-augmented image and G still
gets gradients through the augmentation. Every random draw comes from the `torch.Generator` passed in
(the trainer keeps it in its checkpoints), and new tensors take device and dtype from the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ganime.errors import ConfigError

Augment = Callable[[Tensor, torch.Generator], Tensor]


def _uniform(x: Tensor, generator: torch.Generator) -> Tensor:
    # one U[0, 1) draw per image, drawn in float32 so the stream is the same under bf16/fp16 autocast
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=torch.float32)
    return u.to(x.dtype)


def rand_brightness(x: Tensor, generator: torch.Generator) -> Tensor:
    """Add U[-0.5, 0.5) per image."""
    return x + (_uniform(x, generator) - 0.5)


def rand_saturation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Scale the distance from the per-pixel channel mean by U[0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def rand_contrast(x: Tensor, generator: torch.Generator) -> Tensor:
    """Scale the distance from the per-image mean by U[0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def rand_translation(x: Tensor, generator: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size in x and y (integer pixels), filling with zeros."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), generator=generator, device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=generator, device=x.device)
    # gather from a 1-pixel zero border: indices that fall outside the image clamp onto it
    rows = (torch.arange(h, device=x.device)[None, :, None] + ty + 1).clamp_(0, h + 1)  # (n, h, 1)
    cols = (torch.arange(w, device=x.device)[None, None, :] + tx + 1).clamp_(0, w + 1)  # (n, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
    # NHWC gather (cheap when x is channels_last), back to an NCHW view
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def rand_cutout(x: Tensor, generator: torch.Generator, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` times the image size per image, centred anywhere (may be clipped)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1), generator=generator, device=x.device)
    y0, x0 = cy - ch // 2, cx - cw // 2
    ys, xs = torch.arange(h, device=x.device)[None], torch.arange(w, device=x.device)[None]
    in_y = (ys >= y0) & (ys < y0 + ch)  # (n, h)
    in_x = (xs >= x0) & (xs < x0 + cw)  # (n, w)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (n, h, w)
    return x * keep[:, None].to(x.dtype)


AUGMENTS: dict[str, tuple[Augment, ...]] = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); unknown names are a ConfigError."""
    names = [p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy)]
    names = [p for p in names if p]
    unknown = [p for p in names if p not in AUGMENTS]
    if unknown:
        raise ConfigError(f"unknown DiffAugment policy {unknown}; choose from: {', '.join(AUGMENTS)}")
    return tuple(names)


def diff_augment(x: Tensor, policy: str | Sequence[str], generator: torch.Generator, p: float = 1.0) -> Tensor:
    """Apply the policy's augmentations in order (color, translation, cutout as listed); '' = identity.

    p < 1: each augmentation is applied to each image with probability p (one draw per image and op, before
    the op's own draws), as ADA does; p = 1 draws nothing extra, so a fixed-policy run's stream is unchanged."""
    for name in parse_policy(policy):
        for fn in AUGMENTS[name]:
            if p >= 1.0:
                x = fn(x, generator)
            elif p > 0.0:
                keep = _uniform(x, generator) >= p  # (N, 1, 1, 1): True = this image skips the op
                x = torch.where(keep, x, fn(x, generator))
    return x


@dataclass
class AdaptiveP:
    """StyleGAN2-ADA's controller of the augmentation probability p (Karras et al. 2020, sec. 3).

    D over-fits when it is too sure of the reals: r = E[sign(D(real))] rises towards 1. Every `interval` steps
    p moves by sign(r - target) * (images in those steps) / (kimg * 1000), clamped to [0, 1], so p can go from
    0 to 1 in `kimg` thousand images. The paper's target is 0.6 and its speed 500 kimg; CPU runs are 10x
    shorter, so ganime's default speed is 100 kimg. The state (p and the signs summed since the last update)
    is plain floats, saved in checkpoints for an exact resume.
    """

    target: float
    kimg: float
    interval: int
    p: float = 0.0
    signs: float = 0.0  # sum of sign(D(real)) since the last update
    count: int = 0  # images since the last update
    steps: int = 0  # steps since the last update

    def observe(self, real_logits: Tensor) -> None:
        """Add one D step's real logits; every `interval` steps, update p (one device sync)."""
        self.signs += float(torch.sign(real_logits.detach().float()).sum())
        self.count += real_logits.numel()
        self.steps += 1
        if self.steps >= self.interval:
            r = self.signs / max(self.count, 1)
            self.p = min(1.0, max(0.0, self.p + math.copysign(1.0, r - self.target) * self.count / (self.kimg * 1000)))
            self.signs, self.count, self.steps = 0.0, 0, 0

    def state(self) -> dict[str, float]:
        """What a checkpoint keeps."""
        return {"p": self.p, "signs": self.signs, "count": self.count, "steps": self.steps}

    def load(self, state: dict) -> None:
        """Back to a `state()`."""
        self.p, self.signs = float(state["p"]), float(state["signs"])
        self.count, self.steps = int(state["count"]), int(state["steps"])
