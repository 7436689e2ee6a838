"""The seed recipes' networks, layer for layer, and shapes at every supported size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganime.config import PRESETS, SUPPORTED_RESOLUTIONS, ModelConfig
from ganime.models import build_discriminator, build_generator


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def layer_list(m: nn.Module) -> list[tuple]:
    out = []
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            out.append((type(mod).__name__, mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0], mod.bias is not None))
        elif isinstance(mod, (nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Dropout)):
            out.append((type(mod).__name__,))
    return out


def test_tutorial_generator_is_the_dcgan_tutorial():
    G = build_generator(PRESETS["tutorial"].model)
    assert layer_list(G) == [
        ("ConvTranspose2d", 128, 512, 4, 1, 0, False), ("BatchNorm2d",), ("ReLU",),
        ("ConvTranspose2d", 512, 256, 4, 2, 1, False), ("BatchNorm2d",), ("ReLU",),
        ("ConvTranspose2d", 256, 128, 4, 2, 1, False), ("BatchNorm2d",), ("ReLU",),
        ("ConvTranspose2d", 128, 64, 4, 2, 1, False), ("BatchNorm2d",), ("ReLU",),
        ("ConvTranspose2d", 64, 3, 4, 2, 1, False), ("Tanh",),
    ]
    # 128*512*16 + 512*256*16 + 256*128*16 + 128*64*16 + 64*3*16 weights + BN scale/shift (2*(512+256+128+64))
    assert n_params(G) == 3_804_160 + 1_920 == 3_806_080


def test_tutorial_discriminator_is_the_dcgan_tutorial():
    D = build_discriminator(PRESETS["tutorial"].model)
    assert layer_list(D) == [
        ("Conv2d", 3, 64, 4, 2, 1, False), ("LeakyReLU",),
        ("Conv2d", 64, 128, 4, 2, 1, False), ("BatchNorm2d",), ("LeakyReLU",),
        ("Conv2d", 128, 256, 4, 2, 1, False), ("BatchNorm2d",), ("LeakyReLU",),
        ("Conv2d", 256, 512, 4, 2, 1, False), ("BatchNorm2d",), ("LeakyReLU",),
        ("Conv2d", 512, 1, 4, 1, 0, False),
    ]
    assert n_params(D) == 2_763_776 + 1_792 == 2_765_568
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))


def test_tutorial_recipe_hyperparameters():
    p = PRESETS["tutorial"]
    assert (p.model.z_dim, p.batch_size, p.model.resolution, p.grid_size) == (128, 128, 64, 64)
    assert (p.optim.lr_g, p.optim.lr_d, p.optim.betas_g, p.optim.betas_d) == (2e-4, 2e-4, (0.5, 0.999), (0.5, 0.999))
    assert p.loss.loss == "bce"


def test_keras_readme_recipe():
    p = PRESETS["keras-readme"]
    assert (p.optim.lr_d, p.optim.lr_g, p.batch_size) == (5e-4, 1e-4, 25)
    D = build_discriminator(p.model)
    drops = [m.p for m in D.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(d == 0.6 for d in drops)
    # Keras BatchNormalization(momentum=0.9) == PyTorch momentum 0.1
    bns = [m for m in build_generator(p.model).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == pytest.approx(0.1) for m in bns)


def test_weights_are_initialised_like_the_tutorial():
    torch.manual_seed(0)
    G = build_generator(PRESETS["tutorial"].model)
    w = G.main[0].weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001


@pytest.mark.parametrize("res", SUPPORTED_RESOLUTIONS)
def test_shapes_at_every_size(res):
    cfg = ModelConfig(resolution=res, g_width=4, d_width=4, z_dim=8)
    G, D = build_generator(cfg), build_discriminator(cfg)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 3, res, res)
    assert x.abs().max() <= 1
    assert D(x).shape == (2,)


def test_conditional_model_uses_labels():
    cfg = ModelConfig(resolution=16, g_width=4, d_width=4, z_dim=8, num_classes=5, spectral_norm=True)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    x = G(z, torch.tensor([0, 3]))
    assert not torch.allclose(x[0], x[1])  # same style latent, different class -> different image
    assert D(x, torch.tensor([0, 3])).shape == (2,)
