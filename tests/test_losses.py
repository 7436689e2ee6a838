"""Each adversarial loss is a pure function of D's logits with its defining property."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganime.errors import ConfigError
from ganime.losses import LOSSES, d_bce, d_hinge, d_rpgan, g_hinge, g_nonsat, g_rpgan, get_loss, r1_penalty


def test_hinge_is_zero_with_no_gradient_beyond_the_margin():
    """Reals scored >= 1 and fakes <= -1 cost D nothing and push it no further (Lim & Ye 2017)."""
    real = torch.tensor([1.0, 1.5, 7.0], requires_grad=True)
    fake = torch.tensor([-1.0, -2.0, -30.0], requires_grad=True)
    loss = d_hinge(real, fake)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(real.grad) == 0 and torch.count_nonzero(fake.grad) == 0


def test_hinge_is_linear_inside_the_margin():
    real = torch.tensor([0.5, -1.0], requires_grad=True)  # 1 - r = 0.5, 2.0
    fake = torch.tensor([0.0, 3.0], requires_grad=True)  # 1 + f = 1.0, 4.0
    loss = d_hinge(real, fake)
    loss.backward()
    assert loss.item() == pytest.approx((0.5 + 2.0) / 2 + (1.0 + 4.0) / 2)
    assert torch.equal(real.grad, torch.full((2,), -0.5))  # each logit inside the margin: slope 1/N
    assert torch.equal(fake.grad, torch.full((2,), 0.5))


def test_hinge_generator_loss_is_minus_the_mean_fake_logit():
    fake = torch.tensor([-3.0, 0.5, 2.5])
    assert g_hinge(fake).item() == pytest.approx(0.0 - fake.mean().item())


def test_bce_equals_the_tutorials_sigmoid_and_bceloss():
    """The tutorial's Sigmoid + BCELoss, computed on logits (no saturation at large |logit|)."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g) * 3
    bce = nn.BCELoss()
    want_d = bce(torch.sigmoid(real), torch.ones(16)) + bce(torch.sigmoid(fake), torch.zeros(16))
    want_g = bce(torch.sigmoid(fake), torch.ones(16))
    assert d_bce(real, fake).item() == pytest.approx(want_d.item(), rel=1e-5)
    assert g_nonsat(fake).item() == pytest.approx(want_g.item(), rel=1e-5)
    # where Sigmoid + BCELoss saturates (log 0 clamped to -100), the logit form keeps the true value
    assert g_nonsat(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_r1_is_the_squared_gradient_norm_on_reals():
    """For a linear D(x) = <w, x> the gradient is w for every image: R1 = |w|^2 exactly."""
    w = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 3, 4, 4).requires_grad_(True)
    logits = (x * w).sum(dim=(1, 2, 3))
    penalty = r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-5)
    # create_graph: the penalty itself can be minimised with respect to D's weights
    w.requires_grad_(True)
    logits = (x * w).sum(dim=(1, 2, 3))
    r1_penalty(logits, x).backward()
    assert torch.allclose(w.grad, 2 * w.detach(), rtol=1e-5)


def test_losses_are_chosen_by_name():
    assert get_loss("hinge").d is d_hinge and get_loss("hinge").g is g_hinge
    assert get_loss("nonsat") == get_loss("bce")
    with pytest.raises(ConfigError, match="unknown loss 'wgan'.*hinge"):
        get_loss("wgan")
    assert set(LOSSES) == {"bce", "nonsat", "hinge", "rpgan"}
    assert get_loss("rpgan").paired and not get_loss("hinge").paired


def test_rpgan_judges_each_real_against_its_paired_fake():
    """Relativistic pairing (R3GAN): only the differences D(x_i) - D(G(z_i)) count, so shifting every logit
    by one constant changes nothing, and G's loss is D's with the roles swapped."""
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(8, generator=g), torch.randn(8, generator=g)
    want = torch.nn.functional.softplus(fake - real).mean()
    assert d_rpgan(real, fake).item() == pytest.approx(want.item(), rel=1e-6)
    assert d_rpgan(real + 5.0, fake + 5.0).item() == pytest.approx(want.item(), rel=1e-6)
    assert d_hinge(real + 5.0, fake + 5.0).item() != pytest.approx(d_hinge(real, fake).item())  # not relativistic
    assert g_rpgan(fake, real).item() == pytest.approx(d_rpgan(fake, real).item(), rel=1e-6)
    # pairing, not set means: the loss depends on which fake meets which real
    assert d_rpgan(real, fake.flip(0)).item() != pytest.approx(d_rpgan(real, fake).item())
