"""Divergence guard: an injected NaN is never applied, training rolls back with a lower lr, and gives up cleanly."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

import ganime
from conftest import tiny_config, write_images
from ganime.config import override
from ganime.losses import GANLoss, d_bce, g_nonsat
from ganime.training import distributed
from ganime.training import trainer as trainer_mod
from ganime.training.guard import Guard, step_check


def nan_loss(bad_calls):
    """The BCE loss pair, except that D's loss is NaN on the calls numbered in `bad_calls` (1-based)."""
    calls = {"n": 0}

    def d(real_logits, fake_logits):
        calls["n"] += 1
        loss = d_bce(real_logits, fake_logits)
        return loss * float("nan") if bad_calls(calls["n"]) else loss

    return GANLoss(d, g_nonsat)


def make_trainer(cfg, tmp_path):
    data = ganime.data.dataset.load_dataset(cfg.data.path, 16, cache_dir=cfg.data.cache_dir)
    return trainer_mod.Trainer(cfg, data, torch.device("cpu"), tmp_path / "run", step_check=step_check(cfg.max_rollbacks))


def all_finite(ckpt):
    return all(torch.isfinite(t).all() for t in load_file(str(ckpt / "model.safetensors")).values())


@pytest.fixture
def cfg(tmp_path):
    write_images(tmp_path / "imgs", 8)  # 2 steps per epoch at batch 4
    return tiny_config(tmp_path / "imgs", tmp_path / "cache", batch_size=4, max_steps=8, ckpt_every=2)


def test_one_nan_rolls_back_lowers_lr_and_training_finishes(tmp_path, cfg, monkeypatch, caplog):
    monkeypatch.setattr(trainer_mod, "get_loss", lambda name: nan_loss(lambda n: n == 6))
    with caplog.at_level(logging.WARNING):
        result = ganime.train(cfg, tmp_path / "run", progress=False)
    assert result.step == 8 and result.stopped == "done"
    assert any("non-finite D loss" in r.message and "rolled back to step 4" in r.message for r in caplog.records)
    assert all_finite(result.checkpoint)
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["optim"]["G"][0]["lr"] == pytest.approx(cfg.optim.lr_g / 2)  # halved once, and saved
    assert state["optim"]["D"][0]["lr"] == pytest.approx(cfg.optim.lr_d / 2)


def test_persistent_nan_stops_after_three_rollbacks_keeping_the_good_checkpoint(tmp_path, cfg, monkeypatch, capsys):
    from ganime.cli import main

    monkeypatch.setattr(trainer_mod, "get_loss", lambda name: nan_loss(lambda n: n >= 5))
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    code = main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "run"), "--steps", "8",
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: training diverged") and "after 3 rollbacks" in err[-1]
    assert "Traceback" not in "\n".join(err)
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())
    assert latest["step"] == 4  # the last good state; nothing from the diverged steps was saved
    assert all_finite(tmp_path / "run" / latest["checkpoint"])


def test_a_nan_gradient_is_never_applied(tmp_path, cfg):
    trainer = make_trainer(cfg, tmp_path)
    guard = Guard(trainer, max_rollbacks=3)
    real, labels = trainer.loader.batch(0, 0)
    assert guard.train_step(real, labels) is not None  # a clean step is applied
    trainer.advance(0.0)  # (the loop's bookkeeping)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    guard._remember()
    param = next(trainer.G.parameters())
    handle = param.register_hook(lambda g: g * float("inf"))  # finite loss, inf gradient
    assert guard.train_step(real, labels) is None
    handle.remove()
    after = trainer.G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights untouched by the bad step
    assert trainer.step == 1 and guard.total_rollbacks == 1
    assert trainer.opt_G.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr_g / 2)


def test_guard_off_lets_the_nan_through(tmp_path, cfg, monkeypatch):
    # the control for the tests above: without the guard the injected NaN poisons the weights
    monkeypatch.setattr(trainer_mod, "get_loss", lambda name: nan_loss(lambda n: n == 6))
    result = ganime.train(override(cfg, max_rollbacks=0), tmp_path / "run", progress=False)
    assert not all_finite(result.checkpoint)


def test_collapse_signature_warns_once_per_episode(tmp_path, cfg, caplog):
    trainer = make_trainer(cfg, tmp_path)
    guard = Guard(trainer, collapse_window=50)
    with caplog.at_level(logging.WARNING):
        for _ in range(49):
            guard.observe(0.001, 0.002)
        assert not caplog.records  # not sustained yet
        for _ in range(100):
            guard.observe(0.001, 0.002)
        guard.observe(0.7, 0.4)  # healthy again: a new episode may warn again
        for _ in range(50):
            guard.observe(0.0, 0.0)
    assert sum("possible collapse" in r.message for r in caplog.records) == 2


def test_collapse_is_watched_on_every_guarded_step(tmp_path, cfg, caplog, monkeypatch):
    # the wiring: Guard.train_step feeds each step's D loss and D(G(z)) to the collapse watch
    trainer = make_trainer(cfg, tmp_path)
    guard = Guard(trainer, collapse_window=3)
    real, labels = trainer.loader.batch(0, 0)
    stats = trainer.train_step(real, labels)
    assert float(stats["loss_d"]) > 0.1  # a fresh D is far from the signature
    collapsed = {**stats, "loss_d": torch.tensor(1e-4), "d_fake": torch.tensor(2e-4)}
    monkeypatch.setattr(trainer, "train_step", lambda r, l: collapsed)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            guard.train_step(real, labels)
    assert sum("possible collapse" in r.message for r in caplog.records) == 1


def test_a_save_that_failed_on_any_rank_is_not_a_rollback_point(tmp_path, cfg, monkeypatch):
    """Under torchrun only rank 0 writes. If its save fails (on-save-error continue), no rank may take that step
    as its rollback point, or a later NaN would roll the ranks back to different states. The ranks agree
    through `distributed.all_true`; here it reports that some rank's save failed."""
    trainer = make_trainer(cfg, tmp_path)
    guard = Guard(trainer, max_rollbacks=3, on_save_error="continue")
    real, labels = trainer.loader.batch(0, 0)
    first = guard.save()  # step 0: agreed by every rank
    assert first is not None and guard.last_checkpoint == first
    guard.train_step(real, labels)
    trainer.advance(0.0)
    agreed = []
    monkeypatch.setattr(distributed, "all_true", lambda flag: agreed.append(bool(flag)) or False)
    assert guard.save() is None  # this rank wrote step 1, another one failed
    assert agreed == [True]
    assert guard.last_checkpoint == first and guard._good_step == 0
    monkeypatch.undo()
    handle = next(trainer.G.parameters()).register_hook(lambda g: g * float("nan"))
    assert guard.train_step(real, labels) is None  # a NaN now rolls back to step 0, as on every other rank
    handle.remove()
    assert trainer.step == 0
