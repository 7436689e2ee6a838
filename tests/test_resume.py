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


def test_resume_config_is_the_one_resume_policy():
    """What a resume may change, as the CLI and `train(resume=True)` both ask it: budgets, intervals and runtime
    options; the experiment (model, optim, loss, data, batch size, seed) only to the value it already has."""
    from ganime.config import preset, resume_config

    saved = override(preset("tutorial"), epochs=5, sample_every=0)
    cfg = resume_config(saved, max_steps=40, sample_every=10, precision="bf16", seed=saved.seed)
    assert (cfg.epochs, cfg.kimg, cfg.minutes, cfg.max_steps) == (0, 0.0, 0.0, 40)  # the new budget replaces the old
    assert (cfg.sample_every, cfg.precision, cfg.model) == (10, "bf16", saved.model)
    # the loop passes the whole asked-for config: equal sections pass (a tuple equals the list JSON gives back)
    asked = override(saved, max_steps=40, **{"optim.betas_g": [0.5, 0.999]})
    assert resume_config(saved, **{k: getattr(asked, k) for k in ("optim", "model", "max_steps")}).optim == saved.optim
    with pytest.raises(ConfigError, match=r"cannot resume with model\.resolution 32 \(the run's is 64\), seed 1"):
        resume_config(saved, **{"model.resolution": 32, "seed": 1, "epochs": 9})
    with pytest.raises(ConfigError, match=r"model\.g_width 16 \(the run's is 64\)"):
        resume_config(saved, model=override(saved, **{"model.g_width": 16}).model, epochs=9)
    with pytest.raises(ConfigError, match="say how much longer to train"):
        resume_config(saved, sample_every=10)


def test_cli_resume_refuses_a_changed_experiment_in_one_line(tmp_path, capsys):
    from ganime.cli import main

    write_images(tmp_path / "imgs", 8)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=2)
    ganime.train(cfg, tmp_path / "run", progress=False)
    for flags, message in [
        (("--batch-size", "2", "--steps", "4"), "cannot resume with batch_size 2"),
        (("--sample-every", "1"), "say how much longer"),
        (("--config", str(tmp_path / "run" / "config.json"), "--steps", "4"), "drop --config"),
    ]:
        assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], (flags, err)
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "3", "--batch-size", str(cfg.batch_size),
                 "--no-progress"]) == 0  # the run's own value is no change
