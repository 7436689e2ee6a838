"""DiffAugment: differentiable (G learns through it), shape-keeping, seeded by the generator passed in."""

from __future__ import annotations

import pytest
import torch

from ganime.augment import (
    AUGMENTS,
    diff_augment,
    parse_policy,
    rand_brightness,
    rand_cutout,
    rand_translation,
)
from ganime.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_flow_to_the_input_and_are_exact(policy):
    """The gradient reaching G's images is the true derivative of the augmented batch (float64 gradcheck),
    and it is non-zero: D's verdict on augmented fakes trains G."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    # the same draws on every call, so the function gradcheck probes is fixed; fast mode checks a random
    # projection of the Jacobian against finite differences instead of all of it
    fn = lambda t: diff_augment(t, policy, _gen(7))
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    w = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    (diff_augment(x, policy, _gen(7)) * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_keeps_shape_and_moves_content_by_at_most_an_eighth():
    n, size = 64, 16
    x = torch.zeros(n, 3, size, size)
    x[:, :, 8, 8] = 1.0  # one bright pixel per image, far enough from the border to stay inside
    y = rand_translation(x, _gen(3))
    assert y.shape == x.shape
    assert torch.equal(y.sum(dim=(1, 2, 3)), torch.full((n,), 3.0))  # moved, not lost or duplicated
    pos = y[:, 0].flatten(1).argmax(dim=1)
    dy, dx = pos // size - 8, pos % size - 8
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2  # 0.125 * 16 = 2 pixels at most
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10  # and really random per image


def test_translation_fills_with_zeros_and_keeps_the_layout():
    x = torch.ones(8, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    y = rand_translation(x, _gen(0))
    assert y.shape == x.shape and set(y.unique().tolist()) <= {0.0, 1.0}
    assert (y == 0).any()  # some image shifted: uncovered pixels are 0 (mid-grey in [-1, 1])


def test_cutout_zeroes_one_square_of_half_the_size_and_nothing_else():
    x = torch.ones(32, 3, 16, 16)
    y = rand_cutout(x, _gen(1))
    assert y.shape == x.shape
    holes = (y[:, 0] == 0)
    assert torch.equal(holes, (y == 0).all(dim=1))  # the same square in every channel
    area = holes.flatten(1).sum(dim=1)
    assert (area <= 8 * 8).all() and (area > 0).all() and (area == 64).any()  # clipped at borders only
    for img in holes:  # each hole is one axis-aligned rectangle
        rows, cols = img.any(dim=1).nonzero().flatten(), img.any(dim=0).nonzero().flatten()
        assert img.sum() == len(rows) * len(cols)
    assert torch.equal(y[~(y == 0)], x[~(y == 0)])  # everything else is untouched


def test_brightness_shifts_each_image_by_one_constant():
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    d = rand_brightness(x, _gen(2)) - x
    per_image = d[:, :1, :1, :1]
    assert torch.allclose(d, per_image.expand_as(d), atol=1e-6)
    assert (per_image.abs() <= 0.5).all() and per_image.std() > 0.1


def test_same_generator_state_gives_the_same_batch():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    policy = "color,translation,cutout"
    a, b, c = diff_augment(x, policy, _gen(5)), diff_augment(x, policy, _gen(5)), diff_augment(x, policy, _gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dtype_follows_the_input_and_draws_do_not_depend_on_it():
    """Under bf16 autocast the augmentation stays in bf16 and uses the same random draws as in fp32."""
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y32 = diff_augment(x, "color,translation,cutout", _gen(4))
    y16 = diff_augment(x.bfloat16(), "color,translation,cutout", _gen(4))
    assert y16.dtype == torch.bfloat16
    assert ((y16.float() - y32).abs() < 0.1).float().mean() > 0.99


def test_policy_parsing_and_errors():
    assert parse_policy("color, translation,,cutout") == ("color", "translation", "cutout")
    x = torch.rand(2, 3, 8, 8)
    assert diff_augment(x, "", _gen()) is x
    with pytest.raises(ConfigError, match="unknown DiffAugment policy.*color, translation, cutout"):
        parse_policy("color,flip")
    assert set(AUGMENTS) == {"color", "translation", "cutout"}
