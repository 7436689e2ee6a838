"""The conditional glyph model learns: the label picks the character, and training records the characters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganime.generate import load_generator
from ganime.training.loop import train

from .conftest import CHARS, STEPS, GlyphModel, glyph_config

PER_CHAR = 40


def nearest_label(images: np.ndarray, real: np.ndarray, labels: list[str]) -> list[str]:
    """The label of each image's nearest training glyph (L2 over pixels)."""
    a = images.reshape(len(images), -1).astype(np.float32)
    b = real.reshape(len(real), -1).astype(np.float32)
    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
    return [labels[i] for i in d.argmin(axis=1)]


def test_generated_glyphs_are_the_requested_characters(glyph_model: GlyphModel) -> None:
    gen = load_generator(glyph_model.run)
    assert gen.classes == sorted(CHARS)
    per_char = {}
    for i, ch in enumerate(CHARS):
        z = torch.randn(PER_CHAR, gen.z_dim, generator=torch.Generator().manual_seed(100 + i))
        images = gen.images(z, gen.labels_for([ch] * PER_CHAR))
        assert images.shape == (PER_CHAR, 16, 16, 1)
        got = nearest_label(images, glyph_model.images, glyph_model.labels)
        per_char[ch] = sum(g == ch for g in got) / PER_CHAR
    accuracy = sum(per_char.values()) / len(per_char)
    chance = 1 / len(CHARS)
    # measured 0.98-1.0 after 200-300 steps; chance is 0.2; a label-blind G scores ~chance
    assert accuracy >= 0.8, f"nearest-neighbour accuracy {accuracy:.2f} after {STEPS} steps: {per_char}"
    assert min(per_char.values()) > 2 * chance, per_char


def test_one_latent_draws_different_characters(glyph_model: GlyphModel) -> None:
    # the latent is the style, the label the character: one z across the labels gives distinct glyphs
    gen = load_generator(glyph_model.run)
    z = gen.latents([7])[0]
    images = gen.images(z[None].expand(len(CHARS), -1), gen.labels_for(list(CHARS))).astype(np.float32)
    flat = images.reshape(len(CHARS), -1)
    dists = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))
    off_diagonal = dists[~np.eye(len(CHARS), dtype=bool)]
    # RMS pixel difference (0-255) between any two characters of the one style: 0 if G ignored the label;
    # measured ~23 after 300 steps (two real fonts' own characters differ by ~85)
    assert off_diagonal.min() > 10, dists


def test_training_sizes_the_classes_to_the_data_and_saves_them(glyph_data: Path, tmp_path: Path) -> None:
    # the preset allows 62 classes; a 5-character set gets a 5-class model whose checkpoint names them
    cfg = glyph_config(glyph_data, tmp_path / "cache", max_steps=1)
    assert cfg.model.num_classes == 62
    result = train(cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["num_classes"] == len(CHARS)
    gen = load_generator(result.checkpoint)
    assert gen.model.num_classes == len(CHARS)
    assert gen.classes == sorted(CHARS)
    assert gen.labels_for(["X", "A"]).tolist() == [sorted(CHARS).index("X"), 0]
