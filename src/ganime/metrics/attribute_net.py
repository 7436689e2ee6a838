"""The faces attribute classifier: a small CNN with one softmax head per DiceBear option, and its shipped weights.

Trained by `scripts/train_attribute_classifier.py` on the labels of the shipped faces set
(`ganime.data.dicebear`); `ganime.metrics.attributes` uses its predictions (attribute coverage) and its
penultimate layer (the `fcd` feature space).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ganime.errors import MissingWeightsError

CLASSIFIER_FILE = "faces-attributes.safetensors"
RESOLUTION = 64  # the classifier sees 64x64 RGB; other sizes are resized first


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AttributeNet(nn.Module):
    """64 px RGB in [0, 1] -> an `embed`-d feature and one logit vector per attribute."""

    def __init__(self, classes: Sequence[int], width: int = 24, embed: int = 128):
        super().__init__()
        w = width
        self.trunk = nn.Sequential(
            _block(3, w),  # 32x32
            _block(w, 2 * w),  # 16x16
            _block(2 * w, 64),  # 8x8
            _block(64, 64),  # 4x4: the renders are aligned, so the layout is kept (no global pooling)
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, embed),
            nn.ReLU(inplace=True),
        )
        self.heads = nn.ModuleList(nn.Linear(embed, n) for n in classes)

    def embed(self, x: Tensor) -> Tensor:
        """(N, 3, 64, 64) in [0, 1] -> (N, embed) penultimate features."""
        return self.trunk(x - 0.5)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = self.embed(x)
        return feats, [head(feats) for head in self.heads]


@dataclass(frozen=True)
class AttributeClassifier:
    """The network with what it predicts: attribute names and values, from the JSON sidecar."""

    net: AttributeNet
    names: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    info: dict  # the sidecar: accuracy per attribute, training command, data hash


def shipped_classifier_path() -> Path:
    """Path of the classifier shipped in the package assets."""
    return Path(str(resources.files("ganime") / "assets" / CLASSIFIER_FILE))


def save_classifier(
    net: AttributeNet, names: Sequence[str], values: Sequence[Sequence[str]], info: dict, path: Path
) -> None:
    """fp16 safetensors (float tensors; BatchNorm counters dropped) + a JSON sidecar next to it."""
    from safetensors.torch import save_file

    state = {k: v.half().contiguous() for k, v in net.state_dict().items() if v.is_floating_point()}
    sidecar = {
        "architecture": {
            "classes": [len(v) for v in values],
            "width": net.trunk[0][0].out_channels,
            "embed": net.trunk[5].out_features,
        },
        "resolution": RESOLUTION,
        "attribute_names": list(names),
        "attribute_values": [list(v) for v in values],
        **info,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")


def load_classifier(path: str | Path | None = None) -> AttributeClassifier:
    """The shipped (or given) classifier in eval mode, float32 on the CPU."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else shipped_classifier_path()
    try:
        info = json.loads(path.with_suffix(".json").read_text())
        state = load_file(str(path))
        arch = info["architecture"]
        net = AttributeNet(arch["classes"], arch["width"], arch["embed"])
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise MissingWeightsError(f"cannot load the attribute classifier {path}: {err}") from None
    names = tuple(info["attribute_names"])
    values = tuple(tuple(v) for v in info["attribute_values"])
    return AttributeClassifier(net.eval().requires_grad_(False), names, values, info)


def to_input(images: np.ndarray) -> Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] at the classifier's 64 px (area-down / bilinear-up resize)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (RESOLUTION, RESOLUTION):
        mode = "area" if min(x.shape[-2:]) >= RESOLUTION else "bilinear"
        x = nn.functional.interpolate(x, size=(RESOLUTION, RESOLUTION), mode=mode)
    return x


@torch.inference_mode()
def predict(clf: AttributeClassifier, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (N, embed), predicted value indices int64 (N, K)) of uint8 NHWC images."""
    feats, preds = [], []
    for start in range(0, len(images), batch_size):
        f, logits = clf.net(to_input(images[start : start + batch_size]))
        feats.append(f.numpy())
        preds.append(torch.stack([lg.argmax(1) for lg in logits], 1).numpy())
    return np.concatenate(feats), np.concatenate(preds)
