"""The grown model (models/grown.py): a half-resolution run grown by one block starts where that run stopped,
learns at full resolution, resumes exactly, and a run that does not fit is refused in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config, write_images
from ganime import checkpoint as ckpt_io
from ganime.config import TrainConfig, override
from ganime.data.dataset import load_dataset
from ganime.errors import ConfigError
from ganime.models import build_discriminator, build_generator
from ganime.models.grown import grow_state, trunk_config
from ganime.training.grow import grow_source
from ganime.training.loop import train
from ganime.training.trainer import Trainer


def _grown_cfg(data, cache, **changes) -> TrainConfig:
    # 32 px grown model whose trunk is the 16 px, width-8 tiny modern network
    return tiny_config(data, cache, "modern-128", **{"model.resolution": 32, "model.g_width": 4, "model.d_width": 4, **changes})


def test_a_grown_network_starts_as_its_trunk_upsampled():
    """Gain 0: G draws the trunk's image upsampled 2x (before the tanh) and D judges the image pooled 2x."""
    cfg = override(TrainConfig(), **{"model.arch": "grown", "model.resolution": 32, "model.g_width": 4,
                                    "model.d_width": 4, "model.z_dim": 16, "model.spectral_norm": True})
    low_cfg = trunk_config(cfg.model)
    torch.manual_seed(0)
    G_low, D_low = build_generator(low_cfg).eval(), build_discriminator(low_cfg).eval()
    G, D = build_generator(cfg.model).eval(), build_discriminator(cfg.model).eval()
    G.load_state_dict(grow_state(G_low.state_dict(), G, "G"))
    D.load_state_dict(grow_state(D_low.state_dict(), D, "D"))
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        logits = G_low.main[:-1](z[:, :, None, None])  # the trunk's image before its tanh
        want = torch.tanh(F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False))
        assert torch.allclose(G(z), want, atol=1e-6)
        assert torch.allclose(D(x), D_low(F.avg_pool2d(x, 2)), atol=1e-6)
        # and the top block is live: a non-zero gain changes the image
        G.gain.fill_(1.0)
        assert not torch.allclose(G(z), want, atol=1e-6)


def test_grow_a_run_then_train_and_resume_exactly(tmp_path):
    data = tmp_path / "imgs"
    write_images(data, 16, size=32)
    cache = tmp_path / "cache"
    low = train(tiny_config(data, cache, "modern", max_steps=3, precision="fp32", channels_last="off"), tmp_path / "low", progress=False)
    grown_cfg = _grown_cfg(data, cache, grow_from=str(low.run_dir), precision="fp32", channels_last="off")
    # the grown run starts from the low run's G, D and G_ema (their trunks), with the top blocks at gain 0
    trainer = Trainer(grown_cfg, load_dataset(str(data), 32, 3, cache_dir=str(cache)), torch.device("cpu"), tmp_path / "t")
    trainer.grow(grow_source(grown_cfg.grow_from, grown_cfg.model))
    saved = ckpt_io.read_tensors(low.checkpoint / ckpt_io.MODEL_FILE)
    for name, net in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema)):
        state = net.state_dict()
        assert state["gain"] == 0
        for k, v in ckpt_io.unflatten(saved, name).items():
            assert torch.equal(state["trunk." + k], v), (name, k)
    # trains at 32 px, and a resumed grown run is bit-exact with an unbroken one
    whole = train(override(grown_cfg, max_steps=4), tmp_path / "whole", progress=False)
    train(override(grown_cfg, max_steps=2), tmp_path / "split", progress=False)
    split = train(override(grown_cfg, max_steps=4), tmp_path / "split", resume=True, progress=False)
    a = ckpt_io.read_tensors(whole.checkpoint / ckpt_io.MODEL_FILE)
    b = ckpt_io.read_tensors(split.checkpoint / ckpt_io.MODEL_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["G.gain"], torch.zeros(())), "the top block never started learning"
    # a grown run resumes without the run it grew from (moved or deleted since): nothing is lost
    shutil.rmtree(low.run_dir)
    again = train(override(grown_cfg, max_steps=5), tmp_path / "split", resume=True, progress=False)
    assert again.step == 5


def test_growing_a_run_that_does_not_fit_is_one_clear_line(tmp_path):
    data = tmp_path / "imgs"
    write_images(data, 8, size=32)
    cache = tmp_path / "cache"
    low = train(tiny_config(data, cache, "tutorial", max_steps=1), tmp_path / "low", progress=False)  # BN D, not SN
    with pytest.raises(ConfigError, match="spectral_norm"):
        train(_grown_cfg(data, cache, grow_from=str(low.run_dir), max_steps=1), tmp_path / "g", progress=False)
    assert not [p.name for p in (tmp_path / "g").glob("*")]  # refused before the run wrote a file
    proc = subprocess.run(
        [sys.executable, "-m", "ganime", "train", "--preset", "modern", "--grow-from", str(low.run_dir),
         "--data", str(data), "--steps", "1", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--preset modern-128" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
