"""Emoji builder on Debian's Noto Color Emoji, and the data set shipped in the package."""

from __future__ import annotations

import csv
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from ganime.cli import main
from ganime.data.emoji import (
    DEBIAN_NOTO_EMOJI,
    codepoint_label,
    parse_codepoint,
    parse_codepoints,
    render_emoji,
)
from ganime.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = Path(str(resources.files("ganime") / "assets" / "noto-emoji-64.npz"))

needs_font = pytest.mark.skipif(
    not DEBIAN_NOTO_EMOJI.is_file(),
    reason=f"{DEBIAN_NOTO_EMOJI} missing (apt-get install fonts-noto-color-emoji)",
)


def colourfulness(rgba: np.ndarray) -> float:
    """Mean spread between the largest and smallest channel over opaque pixels (0 for gray)."""
    rgb = rgba[rgba[..., 3] > 200, :3].astype(np.float32)
    return float((rgb.max(axis=1) - rgb.min(axis=1)).mean())


def test_codepoint_labels_round_trip() -> None:
    assert codepoint_label(0x1F600) == "U+1F600" and codepoint_label(0x23) == "U+0023"
    assert parse_codepoint("U+1F600") == parse_codepoint("1f600") == parse_codepoint("😀") == 0x1F600
    assert parse_codepoints("1F600-1F602, U+2764 😀") == [0x1F600, 0x1F601, 0x1F602, 0x2764, 0x1F600]
    with pytest.raises(DataError):
        parse_codepoint("smile")
    with pytest.raises(DataError, match="range"):
        parse_codepoints("1F602-1F600")


@needs_font
def test_known_codepoints_render_as_coloured_rgba() -> None:
    wanted = [0x1F600, 0x2764, 0x1F680, 0x20, 0x41]  # grinning face, heart, rocket, space, 'A' (not in font)
    dataset, report = render_emoji(DEBIAN_NOTO_EMOJI, size=32, codepoints=wanted)
    assert list(dataset.labels) == ["U+2764", "U+1F600", "U+1F680"]  # code point order
    assert report.rendered == 3 and report.empty == 1  # space is in the cmap but draws nothing
    assert dataset.images.shape == (3, 32, 32, 4) and dataset.images.dtype == np.uint8
    for img, label in zip(dataset.images, dataset.labels):
        alpha = img[..., 3]
        assert 0.2 < (alpha > 0).mean() < 0.99, f"{label}: should be opaque ink on a transparent background"
        assert alpha[0, 0] == 0 and alpha[16, 16] > 0, f"{label}: should be centred"
        assert colourfulness(img) > 40, f"{label}: should be coloured"
    grin = dataset.images[list(dataset.labels).index("U+1F600")]
    r, g, b = grin[grin[..., 3] > 200, :3].astype(float).mean(axis=0)
    assert r > b + 60 and g > b + 30, "the grinning face is yellow"


@needs_font
def test_block_of_smileys_count_is_sane() -> None:
    dataset, report = render_emoji(DEBIAN_NOTO_EMOJI, size=16, codepoints=range(0x1F600, 0x1F650))
    assert 70 <= report.rendered <= 80
    assert len(set(dataset.labels)) == len(dataset)
    assert (dataset.images[..., :3][dataset.images[..., 3] == 0] == 0).all(), (
        "invisible pixels carry no colour"
    )


def test_missing_font_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        render_emoji(tmp_path / "nope.ttf")
    (tmp_path / "bad.ttf").write_bytes(b"not a font")
    with pytest.raises(DataError, match="cannot read font"):
        render_emoji(tmp_path / "bad.ttf")


def test_shipped_dataset_has_the_documented_format() -> None:
    assert SHIPPED.is_file(), (
        "src/ganime/assets/noto-emoji-64.npz is missing: python scripts/build_emoji_dataset.py"
    )
    assert SHIPPED.stat().st_size <= 6_000_000
    with np.load(SHIPPED) as z:
        assert set(z.files) == {"images", "labels", "sources"}
        images, labels, sources = z["images"], z["labels"], z["sources"]
    assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 4)
    assert 1000 <= len(images) <= 2000 and labels.shape == sources.shape == (len(images),)
    assert labels.dtype.kind == "U" and all(label.startswith("U+") for label in labels)
    assert len(set(labels)) == len(labels) and "U+1F600" in set(labels)
    alpha = images[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    assert ((alpha > 0).mean(axis=(1, 2)) > 0.01).all(), "every emoji has ink"


@needs_font
def test_shipped_dataset_matches_the_builder() -> None:
    wanted = ["U+1F600", "U+2764", "U+1F980"]
    dataset, _ = render_emoji(DEBIAN_NOTO_EMOJI, size=64, codepoints=[parse_codepoint(x) for x in wanted])
    with np.load(SHIPPED) as z:
        labels = list(z["labels"])
        shipped = z["images"][[labels.index(x) for x in dataset.labels]]
    # Not bit-exact across Pillow versions (resampling), but the same pictures.
    diff = np.abs(shipped.astype(np.int16) - dataset.images.astype(np.int16))
    assert diff.mean() < 2.0


@needs_font
def test_cli_emoji_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "emoji"
    args = ["data", "emoji", str(DEBIAN_NOTO_EMOJI), "--size", "16", "--codepoints", "1F600-1F64F,2764"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with np.load(out / "dataset.npz") as z:
        images, labels = z["images"], z["labels"]
    assert images.shape == (81, 16, 16, 4) and labels[0] == "U+2764"
    assert "81 rendered of 81" in printed
    with (out / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(images)
    assert rows[0] == {"index": "0", "label": "U+2764", "source": DEBIAN_NOTO_EMOJI.name}
    assert (out / "preview.png").stat().st_size > 0


@needs_font
def test_build_script_writes_the_npz(tmp_path: Path) -> None:
    """The script that rebuilt the shipped file renders the whole font (about 2-3 s)."""
    out = tmp_path / "emoji-16.npz"
    script = REPO / "scripts" / "build_emoji_dataset.py"
    result = subprocess.run(
        [sys.executable, str(script), "--size", "16", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with np.load(out) as z, np.load(SHIPPED) as shipped:
        assert z["images"].shape[1:] == (16, 16, 4) and z["labels"].dtype.kind == "U"
        assert list(z["labels"]) == list(shipped["labels"]), "same emoji as the shipped set"
    assert "rendered:" in result.stdout
