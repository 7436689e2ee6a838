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


def d_rpgan(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Relativistic pairing D loss, softplus(-(D(x_i) - D(G(z_i)))) (Jolicoeur-Martineau 2019; the R3GAN
    baseline of Huang et al. 2024, "The GAN is dead; long live the GAN!", eq. 2): each real is judged
    against its paired fake, so D cannot separate the two sets by one shared offset."""
    return F.softplus(-(real_logits - fake_logits)).mean()


def g_rpgan(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """Relativistic pairing G loss, softplus(-(D(G(z_i)) - D(x_i))): the mirror of `d_rpgan`."""
    return F.softplus(-(fake_logits - real_logits)).mean()


def grad_penalty(logits: Tensor, images: Tensor) -> Tensor:
    """E[|grad_x D(x)|^2] at `images` (which must require grad): R1 on reals (Mescheder et al. 2018), R2 on
    fakes (R3GAN uses both, zero-centred)."""
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


r1_penalty = grad_penalty  # the name the R1 call sites and tests use


@dataclass(frozen=True)
class GANLoss:
    """A named pair of D and G losses; `paired` G losses also take D's logits of the reals."""

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[..., Tensor]  # g(fake_logits), or g(fake_logits, real_logits) when paired
    paired: bool = False


LOSSES: dict[str, GANLoss] = {
    "bce": GANLoss(d_bce, g_nonsat),  # the DCGAN tutorial
    "nonsat": GANLoss(d_bce, g_nonsat),  # same objective, the name used by StyleGAN
    "hinge": GANLoss(d_hinge, g_hinge),
    "rpgan": GANLoss(d_rpgan, g_rpgan, paired=True),  # R3GAN's loss; with r1_gamma and r2_gamma = R3GAN
}


def get_loss(name: str) -> GANLoss:
    """Look up a loss pair by name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}") from None
