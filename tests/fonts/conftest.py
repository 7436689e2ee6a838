"""A tiny class-conditional glyph model trained once per session on two real fonts (Debian's Liberation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganime.config import override, preset

LIBERATION = Path("/usr/share/fonts/truetype/liberation2")
FONTS = (LIBERATION / "LiberationSans-Regular.ttf", LIBERATION / "LiberationSerif-Bold.ttf")
CHARS = "AOTXL"
SIZE = 16
STEPS = 300

needs_fonts = pytest.mark.skipif(
    not all(f.is_file() for f in FONTS), reason="Liberation fonts missing (apt-get install fonts-liberation2)"
)


def glyph_config(data: Path, cache: Path, **changes) -> object:
    """The `glyphs` preset's recipe (losses, TTUR rates, EMA, projection D) on a 16 px, width-16 model."""
    base = {
        "model.resolution": SIZE,
        "model.g_width": 16,
        "model.d_width": 16,
        "model.z_dim": 16,
        "batch_size": 10,
        "grid_size": 16,
        "data.path": str(data),
        "data.cache_dir": str(cache),
        "threads": 1,
    }
    return override(preset("glyphs"), **{**base, **changes})


class GlyphModel:
    """The trained run plus its training set."""

    def __init__(self, run: Path, images: np.ndarray, labels: list[str]) -> None:
        self.run, self.images, self.labels = run, images, labels


@pytest.fixture(scope="session")
def glyph_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CHARS rendered from the two fonts at SIZE px (10 labelled glyphs), saved as a ganime data set."""
    if not all(f.is_file() for f in FONTS):
        pytest.skip("Liberation fonts missing (apt-get install fonts-liberation2)")
    from ganime.data.builders_io import save_dataset
    from ganime.data.glyphs import render_glyphs

    out = tmp_path_factory.mktemp("glyph-data")
    dataset, report = render_glyphs(FONTS, CHARS, size=SIZE)
    assert report.rendered == len(FONTS) * len(CHARS)
    save_dataset(dataset, out)
    return out


@pytest.fixture(scope="session")
def glyph_model(glyph_data: Path, tmp_path_factory: pytest.TempPathFactory) -> GlyphModel:
    """STEPS steps of the glyphs recipe, driven through Trainer (train() would checkpoint after every one-step
    epoch of this 10-image set), saved as a normal checkpoint that `load_generator` and `ganime font` read."""
    from ganime.data.dataset import load_dataset
    from ganime.training.trainer import Trainer

    root = tmp_path_factory.mktemp("glyph-run")
    data = load_dataset(str(glyph_data), SIZE, 1, (255, 255, 255), str(root / "cache"))
    cfg = glyph_config(glyph_data, root / "cache", **{"model.num_classes": len(data.classes)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, data, torch.device("cpu"), root / "run")
        for step in range(STEPS):
            real, labels = trainer.loader.batch(step, 0)  # one batch = the whole set; epoch = step
            trainer.train_step(real, labels)
            trainer.advance(0.0)
        trainer.save()
    finally:
        torch.set_num_threads(threads)
    names = [data.classes[i] for i in data.labels]
    return GlyphModel(root / "run", data.images, names)
