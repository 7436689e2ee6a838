"""The shipped cartoon-faces set: its builder's checks, its labels, and `--data faces` / `--data emoji`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ganime.data import dicebear
from ganime.data.dataset import load_dataset, resolve_source, shipped_dataset_path
from ganime.errors import DataError

REPO = Path(__file__).resolve().parents[2]
RENDERER = REPO / "scripts" / "faces"


def _face(colour: int, size: int = 16) -> np.ndarray:
    img = np.full((size, size, 3), 255, np.uint8)
    img[4:12, 4:12] = colour  # a face-sized blob of ink
    return img


def _record(**changes: str) -> dict[str, str]:
    return {name: "v1" for name in dicebear.ATTRIBUTES} | changes


def test_checks_catch_blank_faces_missing_labels_and_wrong_shapes():
    good = np.stack([_face(10), _face(90)])
    assert dicebear.check_faces(good, [_record(), _record()], 16) == []
    blank = np.stack([_face(10), np.full((16, 16, 3), 255, np.uint8)])
    assert any("blank" in p and "#1" in p for p in dicebear.check_faces(blank, [_record(), _record()], 16))
    assert any("no hair" in p for p in dicebear.check_faces(good, [_record(), _record(hair="")], 16))
    assert any("label records" in p for p in dicebear.check_faces(good, [_record()], 16))
    assert any("expected uint8" in p for p in dicebear.check_faces(good[:, :8], [_record()] * 2, 16))


def test_duplicates_are_dropped_keeping_the_first_in_order():
    images = np.stack([_face(10), _face(90), _face(10), _face(50), _face(90)])
    assert dicebear.drop_duplicates(images).tolist() == [0, 1, 3]


def test_labels_round_trip_through_the_npz(tmp_path):
    records = [_record(hair="long01", skinColor="f2d3b1"), _record(hair="short02", glasses="none")]
    codes, values = dicebear.encode_labels(records, dicebear.ATTRIBUTES)
    faces = dicebear.FaceSet(np.stack([_face(10), _face(90)]), codes, dicebear.ATTRIBUTES, values, np.array([0, 1]))
    path = dicebear.save(faces, tmp_path / "f.npz")
    assert path.read_bytes() == dicebear.save(faces, tmp_path / "g.npz").read_bytes()  # reproducible bytes
    back = dicebear.load(path)
    assert [back.labels(i) for i in range(2)] == records
    assert np.array_equal(back.images, faces.images)
    # the data loader reads the same file as an ordinary image set
    ds = load_dataset(path, 16, cache_dir=tmp_path / "cache")
    assert ds.images.shape == (2, 16, 16, 3) and ds.labels is None


def test_the_shipped_faces_set_is_the_default_and_labelled():
    path = shipped_dataset_path()
    assert path.name == "dicebear-faces-64.npz" and resolve_source("faces") == path
    faces = dicebear.load(path)
    assert len(faces) >= 5000 and faces.images.shape[1:] == (64, 64, 3)
    assert path.stat().st_size <= 21_000_000
    assert dicebear.check_faces(faces.images[:500], [faces.labels(i) for i in range(500)], 64) == []
    # varied: many hair styles, all four skin colours, in the first few hundred faces already
    hair = {faces.labels(i)["hair"] for i in range(300)}
    skin = {faces.labels(i)["skinColor"] for i in range(300)}
    assert len(hair) >= 30 and len(skin) == 4
    assert resolve_source("emoji").name == "noto-emoji-64.npz"
    assert resolve_source("").name == "noto-emoji-64.npz"  # what runs made before the faces set stored


def test_a_folder_named_like_a_builtin_set_wins(tmp_path, monkeypatch):
    (tmp_path / "faces").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_source("faces") == Path("faces")
    with pytest.raises(DataError, match="built-in set: faces, emoji"):
        resolve_source("no-such-folder")


@pytest.mark.skipif(
    shutil.which("node") is None or not (RENDERER / "node_modules" / "@dicebear" / "core").is_dir(),
    reason="node and `npm ci` in scripts/faces are needed to re-render faces",
)
def test_the_renderer_reproduces_the_shipped_faces(tmp_path):
    """Faces 0..7 rendered again with the pinned packages are the shipped ones, pixel for pixel, labels too."""
    fresh = dicebear.render(8, 64, RENDERER)
    shipped = dicebear.load(shipped_dataset_path())
    n = len(fresh)
    assert np.array_equal(fresh.images, shipped.images[:n])
    assert [fresh.labels(i) for i in range(n)] == [shipped.labels(i) for i in range(n)]
