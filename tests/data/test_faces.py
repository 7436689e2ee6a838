"""Face cropping: pure geometry, the pipeline with a stub detector, and the detector's error paths.

The real detector (`animeface`, needs Pillow < 12) is not installed in the test environment; the last test
uses it when it is.
"""

from __future__ import annotations

import csv
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganime.cli import main
from ganime.data import faces
from ganime.data.faces import (
    Box,
    Detection,
    animeface_detector,
    check_detector,
    clamp_square,
    crop_faces,
    crop_square,
    detect_faces,
    detection_scale,
    expand_to_square,
    pillow_known_good,
    unscale_box,
)
from ganime.errors import DataError, MissingDependencyError

RED = (230, 20, 20)


def red_box_detector(score: float = 0.9):
    """Stub detector: 'finds' the bounding box of pure red pixels, and records the sizes it was given."""
    seen: list[tuple[int, int]] = []

    def detect(image: Image.Image) -> list[Detection]:
        seen.append(image.size)
        arr = np.asarray(image.convert("RGB")).astype(int)
        mask = (arr[..., 0] > 180) & (arr[..., 1] < 80) & (arr[..., 2] < 80)
        if not mask.any():
            return []
        ys, xs = np.nonzero(mask)
        return [Detection(Box(xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1), score)]

    detect.seen = seen  # type: ignore[attr-defined]
    return detect


def picture(size: tuple[int, int], red_box: tuple[int, int, int, int] | None) -> Image.Image:
    img = Image.new("RGB", size, (40, 120, 40))
    if red_box:
        x, y, w, h = red_box
        img.paste(RED, (x, y, x + w, y + h))
    return img


# ----------------------------------------------------------------------------------------------- geometry
def test_detection_scale_brings_min_face_to_the_detector_window() -> None:
    assert detection_scale(640, 480, min_face=64) == 1.0
    assert detection_scale(640, 480, min_face=32) == pytest.approx(43 / 32)
    assert detection_scale(100, 100, min_face=10) == pytest.approx(4.3)
    assert detection_scale(4000, 3000, min_face=8) == pytest.approx(4096 / 4000)  # capped
    assert detection_scale(8000, 100, min_face=8) == 1.0  # never downscales


def test_unscale_and_expand() -> None:
    assert unscale_box(Box(20, 40, 60, 80), 2.0) == Box(10, 20, 30, 40)
    sq = expand_to_square(Box(10, 20, 40, 20), margin=0.25)
    assert sq.w == sq.h == pytest.approx(60)  # longest side 40, plus 25 % on each side
    assert (sq.x + sq.w / 2, sq.y + sq.h / 2) == pytest.approx((30, 30))  # same centre


def test_clamp_square_shifts_inside_or_centres_when_too_big() -> None:
    assert clamp_square(Box(10, 10, 50, 50), 200, 100) == (10, 10, 50)
    assert clamp_square(Box(-20, -5, 50, 50), 200, 100) == (0, 0, 50)
    assert clamp_square(Box(180, 70, 50, 50), 200, 100) == (150, 50, 50)
    # Taller than the image: centred vertically (sticks out equally), still shifted inside horizontally.
    assert clamp_square(Box(-30, 0, 120, 120), 200, 100) == (0, -10, 120)


def test_crop_square_pads_with_edge_pixels_and_resizes() -> None:
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:] = (0, 0, 255)
    img = Image.fromarray(arr)
    out = np.asarray(crop_square(img, left=5, top=-5, side=20, size=8))
    assert out.shape == (8, 8, 3)
    assert (out[0, 0] == (255, 0, 0)).all() and (out[-1, -1] == (0, 0, 255)).all(), "edge-replicated padding"
    inside = np.asarray(crop_square(img, left=0, top=0, side=10, size=10))
    assert (inside == arr[:, :10]).all()


def test_detect_faces_maps_boxes_back_from_the_upscaled_image() -> None:
    detect = red_box_detector()
    img = picture((100, 80), (30, 20, 20, 20))
    (det,) = detect_faces(img, detect, min_face=10)  # 20 px face, detector needs 43 px: upscale 4.3x
    assert detect.seen == [(430, 344)]
    assert (det.box.x, det.box.y, det.box.w, det.box.h) == pytest.approx((30, 20, 20, 20), abs=0.5)
    detect.seen.clear()
    detect_faces(img, detect, min_face=64)
    assert detect.seen == [(100, 80)]


# ----------------------------------------------------------------------------------------------- pipeline
def test_crop_faces_with_stub_detector(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    picture((200, 160), (60, 40, 60, 60)).save(raw / "a.png")
    picture((120, 120), (2, 50, 40, 40)).save(raw / "sub" / "edge.jpg", quality=95)  # near the left edge
    picture((120, 120), (50, 50, 12, 12)).save(raw / "tiny.png")  # below --min-face
    picture((64, 64), None).save(raw / "none.png")
    (raw / "broken.png").write_bytes(b"not a png")

    out = tmp_path / "out"
    report = crop_faces(raw, out, size=32, margin=0.25, min_face=32, detector=red_box_detector())
    assert (report.images, report.unreadable, report.without_faces) == (4, 1, 1)
    assert (report.detected, report.too_small, report.written) == (3, 1, 2)

    with (out / "faces.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["source"], r["index"]) for r in rows] == [("a.png", "0"), ("sub/edge.jpg", "1")]
    # Boxes come back from the 1.34x upscaled image (43 / 32): within a pixel of the drawn face.
    assert [int(rows[0][k]) for k in "xywh"] == pytest.approx([60, 40, 60, 60], abs=1)
    assert float(rows[0]["score"]) == pytest.approx(0.9)
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png"]

    crop = np.asarray(Image.open(out / "000000.png"))
    assert crop.shape == (32, 32, 3)
    # Face (60 px) plus 25 % margin each side = 90 px square -> the face fills the middle 2/3 of the crop.
    assert (crop[16, 16] == RED).all() and not (crop[1, 1] == RED).all()
    red_cols = np.flatnonzero((np.abs(crop.astype(int) - RED).sum(-1) < 60).any(axis=0))
    assert abs(len(red_cols) - 32 * 60 / 90) <= 2

    # A second run with stricter --min-score replaces the previous crops instead of leaving stale ones.
    report = crop_faces(raw, out, size=32, min_score=0.95, detector=red_box_detector(score=0.9))
    assert report.low_score == 3 and report.written == 0
    assert list(out.glob("*.png")) == []


def test_crop_faces_input_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        crop_faces(tmp_path / "missing", tmp_path / "out", detector=red_box_detector())
    with pytest.raises(DataError, match="no images"):
        crop_faces(tmp_path, tmp_path / "out", detector=red_box_detector())


# ----------------------------------------------------------------------------------------------- detector
def test_missing_animeface_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "animeface", None)  # makes `import animeface` fail
    with pytest.raises(MissingDependencyError, match=r"ganime\[faces\]"):
        animeface_detector()


def test_cli_missing_dependency_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "animeface", None)
    picture((64, 64), None).save(tmp_path / "a.png")
    assert main(["data", "crop-faces", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "ganime[faces]" in err and "\n" not in err


def test_pillow_known_good_range() -> None:
    assert pillow_known_good((10, 4)) and pillow_known_good((11, 3))
    assert (
        not pillow_known_good((10, 3)) and not pillow_known_good((12, 0)) and not pillow_known_good((13, 0))
    )


def test_self_test_refuses_a_detector_that_finds_nothing() -> None:
    with pytest.raises(MissingDependencyError, match=r"Pillow>=10.4,<12") as err:
        check_detector(lambda image: [], pillow_version=(13, 0))
    assert "outside" in str(err.value) and "13.0" in str(err.value)
    with pytest.raises(MissingDependencyError, match="inside"):
        check_detector(lambda image: [], pillow_version=(11, 3))


def test_self_test_passes_a_working_detector(caplog: pytest.LogCaptureFixture) -> None:
    found = [Detection(Box(30, 50, 56, 56), 1.0)]
    check_detector(lambda image: found, pillow_version=(11, 3))
    with caplog.at_level(logging.WARNING, logger="ganime.data.faces"):
        check_detector(lambda image: found, pillow_version=(13, 0))
    assert "outside the range" in caplog.text


def fake_animeface(faces_found: list) -> types.ModuleType:
    """A stand-in for the animeface module whose detect() returns `faces_found`."""
    module = types.ModuleType("animeface")
    module.detect = lambda image: faces_found  # type: ignore[attr-defined]
    return module


def test_silently_broken_animeface_is_caught_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What animeface 2.0 does under Pillow >= 12: no error, just no faces in any image.
    monkeypatch.setitem(sys.modules, "animeface", fake_animeface([]))
    picture((64, 64), (10, 10, 40, 40)).save(tmp_path / "a.png")
    with pytest.raises(MissingDependencyError, match="self-test"):
        crop_faces(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_animeface_results_are_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    pos = types.SimpleNamespace(x=30, y=50, width=56, height=56)
    face = types.SimpleNamespace(likelihood=0.97, face=types.SimpleNamespace(pos=pos))
    monkeypatch.setitem(sys.modules, "animeface", fake_animeface([face]))
    detect = animeface_detector()
    assert detect(Image.new("RGB", (128, 128))) == [Detection(Box(30, 50, 56, 56), 0.97)]


def test_real_animeface_finds_the_synthetic_face(tmp_path: Path) -> None:
    pytest.importorskip("animeface", reason="optional extra ganime[faces] not installed")
    detect = animeface_detector()  # runs the self-test; fails loudly under Pillow >= 12
    canvas = Image.new("RGB", (400, 300), (200, 220, 240))
    canvas.paste(faces.synthetic_face(200), (150, 60))
    (tmp_path / "raw").mkdir()
    canvas.save(tmp_path / "raw" / "one.png")
    report = crop_faces(tmp_path / "raw", tmp_path / "out", size=64, detector=detect)
    assert report.written == 1
