"""The memorization check flags a generator that copies training images and passes one that does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganime.errors import DataError
from ganime.metrics import compute
from ganime.metrics.memorization import COPY_THRESHOLD, memorization, nearest_real


def blobs(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Smooth random colour fields (a data set with real spacing between images)."""
    gen = torch.Generator().manual_seed(seed)
    field = torch.rand(n, 3, 4, 4, generator=gen) * 255
    x = torch.nn.functional.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class CopyingGenerator(torch.nn.Module):
    """A 'generator' that memorised its data: each latent picks a training image and returns it verbatim."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("images", torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = (z[:, 0].abs() * 1e4).long() % len(self.images)
        return self.images[index]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def train_set() -> np.ndarray:
    return blobs(200, seed=0)


def test_a_copying_generator_is_flagged_and_the_pairs_sheet_shows_the_copies(train_set, tmp_path) -> None:
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    fake = to_uint8(CopyingGenerator(train_set)(z))
    result = compute("nn", train_set, fake, out_dir=tmp_path)
    assert result["nn_copy_fraction"] == 1.0 and result["nn_ratio_median"] == 0.0
    sheet = np.asarray(Image.open(tmp_path / "nearest_pairs.png"))
    # 16 pairs, 4 per row, 32 px images upscaled x2 with 8 px gaps: each pair's two halves are identical
    assert sheet.shape == (4 * (64 + 8) + 8, 4 * (2 * 64 + 24) + 8, 3)
    left, right = sheet[8 : 8 + 64, 8 : 8 + 64], sheet[8 : 8 + 64, 8 + 64 + 4 : 8 + 128 + 4]
    assert np.array_equal(left, right) and left.std() > 0


def test_near_copies_are_flagged_too(train_set) -> None:
    noise = np.random.default_rng(2).normal(0, 2, train_set[:50].shape)
    near = np.clip(train_set[:50] + noise, 0, 255).astype(np.uint8)
    result = memorization(train_set, near)
    assert result["nn_copy_fraction"] > 0.95


def test_new_samples_of_the_same_distribution_pass(train_set) -> None:
    fresh = blobs(64, seed=3)
    result = memorization(train_set, fresh)
    assert result["nn_copy_fraction"] < 0.05
    assert result["nn_ratio_median"] > 2 * COPY_THRESHOLD


def test_nearest_real_finds_the_source_image(train_set) -> None:
    picks = np.array([5, 17, 199, 0])
    found = nearest_real(train_set, train_set[picks])
    assert np.array_equal(found.real_index, picks) and np.all(found.fake_distance == 0)


def test_one_training_image_is_not_enough(train_set) -> None:
    with pytest.raises(DataError, match="at least 2 training images"):
        memorization(train_set[:1], train_set[:4])
