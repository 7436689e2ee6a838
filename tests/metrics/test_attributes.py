"""The faces attribute classifier and the `attrs` metric: accuracy on shipped faces, floors, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganime.data.dataset import shipped_dataset_path
from ganime.data.dicebear import load
from ganime.errors import DataError
from ganime.metrics import compute
from ganime.metrics.attribute_net import load_classifier, predict


@pytest.fixture(scope="module")
def faces():
    return load(shipped_dataset_path("faces"))


@pytest.fixture(scope="module")
def held_out(faces) -> np.ndarray:
    """200 faces of the classifier's held-out split (scripts/train_attribute_classifier.py, seed 0)."""
    return np.sort(np.random.default_rng(0).permutation(len(faces))[:200])


def test_shipped_classifier_names_the_options_of_held_out_faces(faces, held_out) -> None:
    clf = load_classifier()
    assert clf.names == faces.names and clf.values == faces.values
    _, pred = predict(clf, faces.images[held_out])
    accuracy = dict(zip(faces.names, (pred == faces.attributes[held_out]).mean(axis=0)))
    assert accuracy["hair"] >= 0.97 and accuracy["skinColor"] >= 0.97 and accuracy["hairColor"] >= 0.9
    assert accuracy["mouth"] >= 0.85 and accuracy["eyes"] >= 0.7
    assert np.mean(list(accuracy.values())) >= 0.88
    # the sidecar states what the file scores on the whole held-out split
    assert set(clf.info["held_out_accuracy"]) == set(faces.names) and clf.info["n_held_out"] == 2000


def blur(images: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    r = int(3 * sigma) + 1
    k = torch.exp(-(torch.arange(-r, r + 1).float() ** 2) / (2 * sigma**2))
    k = (k / k.sum()).repeat(3, 1, 1, 1)
    x = F.pad(torch.from_numpy(images).permute(0, 3, 1, 2).float(), (r, r, r, r), mode="replicate")
    x = F.conv2d(F.conv2d(x, k.view(3, 1, 1, -1), groups=3), k.view(3, 1, -1, 1), groups=3)
    return x.round().byte().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def split(faces) -> tuple[np.ndarray, np.ndarray]:
    """600 real faces (halves of 300) and 300 other faces as a perfect generator."""
    perm = np.random.default_rng(1).permutation(len(faces))
    return faces.images[perm[:600]], faces.images[perm[600:900]]


def test_attrs_of_new_real_faces_sit_at_the_floor(split) -> None:
    real, new = split
    got = compute("attrs", real, new)
    assert got["attrs_n"] == 300 and got["attrs_features"].startswith("faces-attributes")
    assert got["attrs_tv"] < 1.5 * got["attrs_tv_real"] + 0.02
    assert got["fcd"] < 1.5 * got["fcd_real"]
    assert got["attrs_combos"] >= 0.9 * got["attrs_combos_real"]
    assert got["attrs_count_hair"] >= 40  # of 45 styles, in 300 faces


def test_attrs_sees_a_collapsed_or_blurred_generator(split) -> None:
    real, new = split
    collapsed = compute("attrs", real, new[np.arange(300) % 10])  # 10 faces, 30 times each
    assert collapsed["attrs_combos"] <= 10 and collapsed["attrs_count_hair"] <= 10
    assert collapsed["attrs_tv"] > 2 * collapsed["attrs_tv_real"]
    assert collapsed["fcd"] > 3 * collapsed["fcd_real"]
    blurred = compute("attrs", real, blur(new))
    assert blurred["fcd"] > 3 * blurred["fcd_real"] and blurred["attrs_tv"] > 2 * blurred["attrs_tv_real"]


def test_attrs_refuses_images_below_64_px(split) -> None:
    real, new = split
    with pytest.raises(DataError, match="64 px"):
        compute("attrs", real[:, ::2, ::2], new[:, ::2, ::2])
