"""Shared fixtures: tiny image folders and tiny configs, all made on the fly (no network, no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganime.config import TrainConfig, override, preset


def write_images(folder: Path, n: int, size: int = 24, seed: int = 0) -> list[Path]:
    """n random RGB PNGs of size x size in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def write_two_colour_set(folder: Path, n: int = 64, size: int = 16) -> Path:
    """Solid red and solid blue squares: a data set whose colour statistics are easy to check."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        colour = (230, 30, 30) if i % 2 else (30, 30, 230)
        Image.new("RGB", (size, size), colour).save(folder / f"c{i:03d}.png")
    return folder


def tiny_config(data: Path, cache: Path, name: str = "tutorial", **changes) -> TrainConfig:
    """A preset shrunk to a 16 px, width-8 model that trains in a fraction of a second per step."""
    base = {
        "model.resolution": 16,
        "model.g_width": 8,
        "model.d_width": 8,
        "model.z_dim": 16,
        "batch_size": 4,
        "data.path": str(data),
        "data.cache_dir": str(cache),
        "threads": 1,
    }
    return override(preset(name), **{**base, **changes})


def tiny_grow_config(data: Path, cache: Path, **changes) -> TrainConfig:
    """The default `grow` recipe shrunk: 8 -> 16 -> 32 px, width 4 at the top, fp32 (no timing of precisions)."""
    from ganime.config import resize, validate

    cfg = tiny_config(data, cache, name="grow", **{"model.resolution": 64})
    cfg = resize(override(cfg, **{"growth.start": 8, "model.levels": 3}), 32)
    fixed = {"model.g_width": 4, "model.d_width": 4, "precision": "fp32", "channels_last": "off"}
    return validate(override(cfg, **{**fixed, **changes}))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "imgs" / "nested", 12)
    return tmp_path / "imgs"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
