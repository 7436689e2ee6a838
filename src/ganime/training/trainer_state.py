"""What a trainer's checkpoint holds and how it is read back: weights, optimizers, scalers, every RNG stream,
the position and the adaptive augmentation's state (checkpoint.py writes the files atomically). `save` and
`restore` take the Trainer (training/trainer.py) whose state they write or load, so a resumed run continues bit
for bit.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganime import __version__
from ganime import checkpoint as ckpt_io
from ganime.errors import CheckpointError

# `trainer` below is a training.trainer.Trainer, which imports this module: typed Any to keep imports one way
Trainer = Any


def save(trainer: Trainer) -> Path:
    """Write a complete checkpoint of the current position."""
    if not trainer.is_main:  # only rank 0 writes; every rank holds the same state (distributed.py)
        return trainer.run_dir / f"ckpt-{trainer.step:09d}"
    mods = {"G": trainer.G.state_dict(), "D": trainer.D.state_dict()}
    if trainer.G_ema is not None:
        mods["G_ema"] = trainer.sampling_generator().state_dict()
    opt_g, groups_g = ckpt_io.optimizer_to_flat(trainer.opt_G, "opt_G")
    opt_d, groups_d = ckpt_io.optimizer_to_flat(trainer.opt_D, "opt_D")
    rng = {
        "rng.torch": torch.get_rng_state(),
        "rng.latent": trainer.gen.get_state(),
        "rng.augment": trainer.aug_gen.get_state(),
    }
    if trainer.device.type == "cuda":
        rng["rng.cuda"] = torch.cuda.get_rng_state(trainer.device)
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}
    state = {
        "config": trainer.cfg.to_dict(),
        "epoch": trainer.epoch,
        "step_in_epoch": trainer.step_in_epoch,
        "images_seen": trainer.images_seen,
        "seconds": trainer.seconds,
        "optim": {"G": groups_g, "D": groups_d},
        "amp": {"G": trainer.scaler_G.state_dict(), "D": trainer.scaler_D.state_dict()},
        "runtime": trainer.runtime.to_dict(),
        "rng_numpy": np_state,
        "rng_python": _py_rng_to_json(random.getstate()),
        "ganime_version": __version__,
        "world_size": trainer.world_size,
        "classes": trainer.classes,
        **({"ada": trainer.ada.state()} if trainer.ada is not None else {}),
    }
    return ckpt_io.save_checkpoint(
        trainer.run_dir, trainer.step, ckpt_io.flatten_state_dicts(**mods), {**opt_g, **opt_d, **rng}, state,
        trainer.cfg.keep_ckpts,
    )


def restore(trainer: Trainer, ckpt: Path) -> None:
    """Load every piece of state saved by `save`, so the run continues bit for bit."""
    state = ckpt_io.read_state(ckpt)
    model = ckpt_io.read_tensors(ckpt / ckpt_io.MODEL_FILE)
    train = ckpt_io.read_tensors(ckpt / ckpt_io.TRAIN_FILE)
    ckpt_io.load_module(trainer.G, ckpt_io.unflatten(model, "G"), f"G in {ckpt}")
    ckpt_io.load_module(trainer.D, ckpt_io.unflatten(model, "D"), f"D in {ckpt}")
    if trainer.G_ema is not None:
        ckpt_io.load_module(trainer.G_ema, ckpt_io.unflatten(model, "G_ema"), f"G_ema in {ckpt}")
    try:
        ckpt_io.optimizer_from_flat(trainer.opt_G, train, state["optim"]["G"], "opt_G")
        ckpt_io.optimizer_from_flat(trainer.opt_D, train, state["optim"]["D"], "opt_D")
        _match_param_layout(trainer.opt_G)
        _match_param_layout(trainer.opt_D)
        torch.set_rng_state(train["rng.torch"])
        trainer.gen.set_state(train["rng.latent"])
        if "rng.augment" in train:
            trainer.aug_gen.set_state(train["rng.augment"])
        if trainer.device.type == "cuda" and "rng.cuda" in train:
            torch.cuda.set_rng_state(train["rng.cuda"], trainer.device)
        for scaler, sd in ((trainer.scaler_G, state.get("amp", {}).get("G")), (trainer.scaler_D, state.get("amp", {}).get("D"))):
            if sd and scaler.is_enabled():
                scaler.load_state_dict(sd)
        np.random.set_state(_np_state(state["rng_numpy"]))
        random.setstate(_py_rng_from_json(state["rng_python"]))
        trainer.step = int(state["step"])
        trainer.epoch, trainer.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        trainer.images_seen, trainer.seconds = int(state["images_seen"]), float(state["seconds"])
        if trainer.ada is not None:
            trainer.ada.load(state["ada"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt} is incomplete or from another version ({type(e).__name__}: {e})") from None


def _match_param_layout(opt: torch.optim.Optimizer) -> None:
    # checkpoints store contiguous tensors; give Adam's moments the parameters' layout (channels_last)
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def _py_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _py_rng_from_json(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def _np_state(d: dict) -> dict:
    return {**d, "state": {**d["state"], "key": np.asarray(d["state"]["key"], dtype=np.uint32)}}
