"""Progressive growing: start a `grown` model (models/grown.py) from a run at half its resolution."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from torch import nn

from ganime import checkpoint as ckpt_io
from ganime.config import ModelConfig, TrainConfig
from ganime.errors import ConfigError
from ganime.models.grown import grow_state, trunk_config

log = logging.getLogger(__name__)


def grow_source(source: str, model: ModelConfig) -> Path:
    """The checkpoint of `source` (a run or checkpoint dir) to grow a `grown` model from; a ConfigError unless its
    model is the grown model's trunk (checked before a new run writes anything)."""
    ckpt = ckpt_io.resolve_checkpoint(source)
    low = TrainConfig.from_dict(ckpt_io.read_state(ckpt)["config"]).model
    want = trunk_config(model)
    differ = [k for k in dataclasses.asdict(want) if k != "latents" and getattr(low, k) != getattr(want, k)]
    if differ:
        raise ConfigError(
            f"cannot grow {source}: its model differs from this one's trunk in {', '.join(differ)} (grow a "
            f"{want.resolution} px {want.arch} run with widths {want.g_width}/{want.d_width}, e.g. preset modern)"
        )
    return ckpt


def grow_from(ckpt: Path, nets: dict[str, nn.Module | None]) -> None:
    """Load `ckpt` (from `grow_source`) into the trunks of a `grown` model's G, D and G_ema (models/grown.py): the
    new top blocks keep their fresh weights at gain 0, so training starts where that run stopped."""
    tensors = ckpt_io.read_tensors(ckpt / ckpt_io.MODEL_FILE)
    for name, net in nets.items():
        if net is not None:
            part = ckpt_io.unflatten(tensors, name) or ckpt_io.unflatten(tensors, "G")  # G_ema of a run without EMA
            net.load_state_dict(grow_state(part, net, f"{name} of {ckpt}"))
    log.info("grown from %s: the new top blocks start at gain 0", ckpt)
