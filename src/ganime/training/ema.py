"""G's exponential moving average (Karras et al. 2018), its ramp-up, and the BatchNorm statistics that go with it."""

from __future__ import annotations

import torch
from torch import nn

BN_REFRESH_BATCHES, BN_REFRESH_SIZE = 4, 64  # 256 latents re-estimate G_ema's BatchNorm statistics


def ema_beta_at(beta: float, rampup: float, step: int) -> float:
    """EMA decay after `step` steps: `beta`, or with a ramp-up a half-life of `rampup * step` steps
    (StyleGAN2-ADA's ema_rampup, Karras et al. 2020), so early averages do not drag in the random init."""
    if rampup > 0:
        return min(beta, 0.5 ** (1.0 / max(rampup * step, 1e-8)))
    return beta


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema = beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def refresh_bn_stats(G: nn.Module, z_dim: int, seed: int, device: torch.device) -> None:
    """Re-estimate BatchNorm running statistics for G's own weights ("standing statistics", Brock et al. 2019).

    G_ema's weights are an average, but the statistics it inherits belong to the current G; sampling in eval
    mode with them washes out colours. Averages over fixed latents (a seeded CPU generator), so the result
    depends only on the weights: resume stays exact and the saved G_ema samples well.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = G.training
    g = torch.Generator().manual_seed(seed)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    classes = getattr(G, "num_classes", 0)
    for _ in range(BN_REFRESH_BATCHES):
        z = torch.randn(BN_REFRESH_SIZE, z_dim, generator=g).to(device)
        G(z, (torch.arange(BN_REFRESH_SIZE) % classes).to(device)) if classes else G(z)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    G.train(was_training)
