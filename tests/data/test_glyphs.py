"""Glyph builder on real Debian fonts (Liberation) plus fonts made on the fly with fontTools."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ganime.cli import main
from ganime.data.glyphs import parse_charset, render_glyphs
from ganime.errors import DataError

LIBERATION = Path("/usr/share/fonts/truetype/liberation2")
SANS = LIBERATION / "LiberationSans-Regular.ttf"
SERIF = LIBERATION / "LiberationSerif-Regular.ttf"

needs_liberation = pytest.mark.skipif(
    not (SANS.is_file() and SERIF.is_file()),
    reason="Liberation fonts missing (apt-get install fonts-liberation2)",
)


def ink_rows(img: np.ndarray) -> tuple[int, int]:
    """First and last row holding ink (< 128) of a (H, W, 1) glyph."""
    rows = np.flatnonzero((img[..., 0] < 128).any(axis=1))
    return int(rows[0]), int(rows[-1])


def by_label(dataset, source: str, label: str) -> np.ndarray:
    (idx,) = np.flatnonzero((dataset.labels == label) & (dataset.sources == source))
    return dataset.images[idx]


def make_symbol_font(path: Path) -> Path:
    """A tiny symbol font (cmap 3/0 only): 'A' and 'B' are boxes reached as U+F041 / U+F042."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable
    from fontTools.ttLib.tables._c_m_a_p import cmap_format_4

    def box():
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0))
        pen.lineTo((100, 700))
        pen.lineTo((500, 700))
        pen.lineTo((500, 0))
        pen.closePath()
        return pen.glyph()

    names = [".notdef", "dingA", "dingB"]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({0x41: "dingA"})
    fb.setupGlyf({".notdef": TTGlyphPen(None).glyph(), "dingA": box(), "dingB": box()})
    fb.setupHorizontalMetrics({n: (600, 100) for n in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "TestSymbol", "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    sub = cmap_format_4(4)
    sub.platformID, sub.platEncID, sub.language = 3, 0, 0
    sub.cmap = {0xF041: "dingA", 0xF042: "dingB"}
    table = newTable("cmap")
    table.tableVersion, table.tables = 0, [sub]
    fb.font["cmap"] = table
    fb.save(str(path))
    return path


def test_parse_charset() -> None:
    assert parse_charset("A-C") == ["A", "B", "C"]
    assert len(parse_charset("A-Za-z0-9")) == 62
    assert parse_charset("-a-c!") == ["-", "a", "b", "c", "!"]
    assert parse_charset("ab-") == ["a", "b", "-"]
    assert parse_charset("a\\-c") == ["a", "-", "c"]
    assert parse_charset("aab") == ["a", "b"]
    with pytest.raises(DataError, match="range"):
        parse_charset("Z-A")
    with pytest.raises(DataError):
        parse_charset("")


@needs_liberation
def test_common_baseline_and_proportions_across_fonts() -> None:
    dataset, report = render_glyphs([SANS, SERIF], chars="Hxg", size=64)
    assert len(report.used) == 2 and report.missing == 0
    assert dataset.images.shape == (6, 64, 64, 1) and dataset.images.dtype == np.uint8
    assert (dataset.images[:, 0, 0, 0] == 255).all(), "background must be white"

    bottoms, heights = [], {}
    for font in (SANS.name, SERIF.name):
        h_top, h_bottom = ink_rows(by_label(dataset, font, "H"))
        x_top, x_bottom = ink_rows(by_label(dataset, font, "x"))
        _, g_bottom = ink_rows(by_label(dataset, font, "g"))
        bottoms += [h_bottom, x_bottom]
        heights[font] = (h_bottom - h_top, x_bottom - x_top)
        assert x_bottom - x_top < 0.8 * (h_bottom - h_top), f"x-height not below cap height in {font}"
        assert g_bottom > h_bottom + 5, f"'g' does not descend below the baseline in {font}"
    assert max(bottoms) - min(bottoms) <= 1, f"baselines differ: bottom ink rows {bottoms}"
    # Each font is scaled on its own: both fill a similar share of the cell.
    assert abs(heights[SANS.name][0] - heights[SERIF.name][0]) <= 6


@needs_liberation
def test_glyphs_are_centred_and_inside_the_cell() -> None:
    dataset, _ = render_glyphs([SANS], chars="A-Za-z0-9", size=32)
    ink = dataset.images[..., 0] < 255
    assert not ink[:, 0, :].any() and not ink[:, -1, :].any()
    assert not ink[:, :, 0].any() and not ink[:, :, -1].any()
    for img in ink:
        cols = np.flatnonzero(img.any(axis=0))
        assert abs((cols[0] + cols[-1]) / 2 - 15.5) <= 1.0


@needs_liberation
def test_missing_glyphs_are_skipped_and_counted() -> None:
    # U+4E00 (CJK) is not in Liberation Sans.
    with pytest.raises(DataError, match="low coverage"):
        render_glyphs([SANS], chars="AB\u4e00")
    dataset, report = render_glyphs([SANS], chars="AB\u4e00", min_coverage=0.5)
    assert list(dataset.labels) == ["A", "B"]
    (font,) = report.used
    assert font.coverage == pytest.approx(2 / 3)
    assert font.missing == ["\u4e00"] and report.missing == 1 and report.rendered == 2


@needs_liberation
def test_space_has_no_ink_and_counts_as_missing() -> None:
    dataset, report = render_glyphs([SANS], chars="A ")
    assert list(dataset.labels) == ["A"] and report.used[0].missing == [" "]


def test_symbol_font_is_skipped_by_default(tmp_path: Path) -> None:
    font = make_symbol_font(tmp_path / "dingbats.ttf")
    with pytest.raises(DataError, match="symbol font"):
        render_glyphs([font], chars="AB")
    dataset, report = render_glyphs([font], chars="AB", include_symbol_fonts=True)
    assert report.used[0].symbol
    assert list(dataset.labels) == ["A", "B"]
    assert (dataset.images < 128).sum() > 100, "symbol glyphs should draw (through the U+F0xx mapping)"


@needs_liberation
def test_symbol_fonts_and_excluded_files_are_counted(tmp_path: Path) -> None:
    make_symbol_font(tmp_path / "dingbats.ttf")
    (tmp_path / "Sans.ttf").write_bytes(SANS.read_bytes())
    (tmp_path / "Serif.ttf").write_bytes(SERIF.read_bytes())
    (tmp_path / "notes.txt").write_text("not a font")
    dataset, report = render_glyphs([tmp_path], chars="AB", exclude=["serif*"])
    assert set(dataset.sources) == {"Sans.ttf"}
    assert report.skip_reasons() == {"symbol font": 1, "excluded": 1}
    assert "1 used, 2 skipped" in report.summary()


@needs_liberation
def test_all_faces_of_a_collection(tmp_path: Path) -> None:
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.ttCollection import TTCollection

    collection = TTCollection()
    collection.fonts = [TTFont(str(SANS)), TTFont(str(SERIF))]
    collection.save(str(tmp_path / "pair.ttc"))
    dataset, report = render_glyphs([tmp_path / "pair.ttc"], chars="Ag")
    assert [f.name for f in report.used] == ["pair.ttc#0", "pair.ttc#1"]
    assert list(dataset.sources) == ["pair.ttc#0"] * 2 + ["pair.ttc#1"] * 2
    assert not np.array_equal(dataset.images[0], dataset.images[2]), "the two faces should differ"


def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        render_glyphs([tmp_path / "nope.ttf"])
    with pytest.raises(DataError, match="no font files"):
        render_glyphs([tmp_path])
    (tmp_path / "broken.ttf").write_bytes(b"\x00\x01\x00\x00garbage")
    with pytest.raises(DataError, match="unreadable"):
        render_glyphs([tmp_path])


@needs_liberation
def test_cli_glyphs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "glyphs"
    code = main(
        ["data", "glyphs", str(SANS), str(SERIF), "--chars", "A-Cx", "--size", "32", "--out", str(out)]
        + ["--exclude", "*Mono*"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 used" in printed and "8 rendered, 0 missing" in printed

    with np.load(out / "dataset.npz") as z:
        assert set(z.files) == {"images", "labels", "sources"}
        images, labels, sources = z["images"], z["labels"], z["sources"]
    assert images.shape == (8, 32, 32, 1) and images.dtype == np.uint8
    assert labels.dtype.kind == "U" and sources.dtype.kind == "U"
    with (out / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["index"] for r in rows] == [str(i) for i in range(8)]
    assert [r["label"] for r in rows] == list("ABCx") * 2 == list(labels)
    assert [r["source"] for r in rows] == [SANS.name] * 4 + [SERIF.name] * 4
    assert (out / "preview.png").stat().st_size > 0 and (out / "fonts.csv").is_file()


def test_cli_glyphs_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "glyphs", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
