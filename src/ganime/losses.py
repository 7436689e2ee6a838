"""Adversarial losses as pure functions of D's logits, chosen by name from LOSSES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ganime.errors import ConfigError


def d_bce(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The tutorial's D loss: BCE(D(x), 1) + BCE(D(G(z)), 0), on logits for numerical safety."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsat(fake_logits: Tensor) -> Tensor:
    """Non-saturating G loss, BCE(D(G(z)), 1) (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-fake_logits).mean()


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge D loss (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge G loss: -E[D(G(z))]."""
    return -fake_logits.mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 = E[|grad_x D(x)|^2] on real data (Mescheder et al. 2018); `real_images` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


@dataclass(frozen=True)
class GANLoss:
    """A named pair of D and G losses."""

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]


LOSSES: dict[str, GANLoss] = {
    "bce": GANLoss(d_bce, g_nonsat),  # the DCGAN tutorial
    "nonsat": GANLoss(d_bce, g_nonsat),  # same objective, the name used by StyleGAN
    "hinge": GANLoss(d_hinge, g_hinge),
}


def get_loss(name: str) -> GANLoss:
    """Look up a loss pair by name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}") from None
