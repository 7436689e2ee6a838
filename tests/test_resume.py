"""N steps + resume + N steps == 2N uninterrupted steps, bit for bit, on the CPU."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import ganime
from conftest import tiny_config, write_images
from ganime.config import override
from ganime.errors import ConfigError


def tensors(run, step, name):
    return load_file(str(run / f"ckpt-{step:09d}" / name))


@pytest.mark.parametrize("preset", ["tutorial", "keras-readme"])  # keras-readme: dropout draws from the RNG
def test_resume_is_bit_identical(tmp_path, preset):
    write_images(tmp_path / "imgs", 10)  # 2 steps per epoch at batch 4: the break falls mid-epoch
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", name=preset, batch_size=4)
    ganime.train(override(cfg, max_steps=8), tmp_path / "straight", progress=False)
    ganime.train(override(cfg, max_steps=3), tmp_path / "resumed", progress=False)
    ganime.train(override(cfg, max_steps=8), tmp_path / "resumed", resume=True, progress=False)
    for name in ("model.safetensors", "train.safetensors"):  # weights, BN stats, Adam moments, RNG states
        a, b = tensors(tmp_path / "straight", 8, name), tensors(tmp_path / "resumed", 8, name)
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, different
    # the metrics log continues without duplicated or missing rows; it also holds the step where the first
    # session stopped (every session logs its last step)
    steps = [line.split(",")[0] for line in (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()[1:]]
    straight = [line.split(",")[0] for line in (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted({*straight, "3"}, key=int)


def test_resume_refuses_a_changed_model(tmp_path):
    write_images(tmp_path / "imgs", 8)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=2)
    ganime.train(cfg, tmp_path / "run", progress=False)
    changed = override(cfg, **{"model.g_width": 16, "max_steps": 4})
    with pytest.raises(ConfigError, match="model"):
        ganime.train(changed, tmp_path / "run", resume=True, progress=False)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    from ganime.errors import CheckpointError

    cfg = tiny_config(tmp_path, tmp_path / "cache", max_steps=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ganime.train(cfg, tmp_path / "empty", resume=True, progress=False)
