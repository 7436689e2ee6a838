"""Fonts written from a glyph model: valid files, every character mapped, and ink where the bitmaps had it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ganime.cli import main
from ganime.fonts.build import SIDE_BEARING, FontInfo, build_font
from ganime.fonts.make import alphabet, write_font
from ganime.fonts.trace import ink_mask
from ganime.generate import load_generator

from .conftest import CHARS, FONTS, SIZE, GlyphModel, needs_fonts

fontTools = pytest.importorskip("fontTools")
pytest.importorskip("potrace")
from fontTools.ttLib import TTFont

K = 8  # render at K * SIZE pixels per em (K px per bitmap pixel), the scale `ganime font` traces at


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def without_specks(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """`mask` without 8-connected ink blobs smaller than `min_pixels` (the tracer drops such specks)."""
    seen = np.zeros_like(mask)
    keep = np.zeros_like(mask)
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        blob, todo = [], [(y0, x0)]
        seen[y0, x0] = True
        while todo:
            y, x = todo.pop()
            blob.append((y, x))
            for ny in range(max(y - 1, 0), min(y + 2, h)):
                for nx in range(max(x - 1, 0), min(x + 2, w)):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        todo.append((ny, nx))
        if len(blob) >= min_pixels:
            keep[tuple(np.array(blob).T)] = True
    return keep


def expected_text(bitmaps: dict[str, np.ndarray], text: str, font: TTFont, x0: int, width: int) -> np.ndarray:
    """Where the ink of `text` should be: each bitmap's ink columns placed after the pen, which moves by the
    hmtx advances; left side bearing from hmtx; rows as in the bitmaps (baseline included) at K x."""
    upm = font["head"].unitsPerEm
    ppem = K * SIZE
    canvas = np.zeros((K * SIZE, width), bool)
    pen = 0.0
    for ch in text:
        name = font.getBestCmap()[ord(ch)]
        advance, lsb = font["hmtx"][name]
        mask = without_specks(ink_mask(bitmaps[ch], K), K * K)
        cols = np.flatnonzero(mask.any(axis=0))
        if cols.size:
            x = x0 + round((pen + lsb) * ppem / upm)
            part = mask[:, cols[0] : cols[-1] + 1]
            canvas[:, x : x + part.shape[1]] |= part[:, : max(0, width - x)]
        pen += advance
    return canvas


def rendered_text(path: Path, text: str, baseline_row: float, x0: int, width: int) -> np.ndarray:
    font = ImageFont.truetype(str(path), K * SIZE, layout_engine=ImageFont.Layout.BASIC)
    img = Image.new("L", (width, K * SIZE), 255)
    ImageDraw.Draw(img).text((x0, baseline_row), text, font=font, fill=0, anchor="ls")
    return np.asarray(img) < 128


@pytest.mark.parametrize("suffix", [".ttf", ".otf"])
def test_written_font_loads_maps_every_character_and_matches_the_bitmaps(
    glyph_model: GlyphModel, tmp_path: Path, suffix: str
) -> None:
    gen = load_generator(glyph_model.run)
    out = tmp_path / f"Ganime Test{suffix}"
    result = write_font(gen, 3, out, name="Ganime Test 3", specimen_path=tmp_path / "specimen.png")
    assert result.font == out and out.is_file() and not result.built.empty

    font = TTFont(str(out))  # fontTools parses every table it is asked for
    cmap = font.getBestCmap()
    assert {chr(cp) for cp in cmap} == set(CHARS) | {" "}
    assert ("glyf" in font) == (suffix == ".ttf") and ("CFF " in font) == (suffix == ".otf")
    names = font["name"]
    assert names.getDebugName(1) == "Ganime Test 3" and names.getDebugName(6) == "GanimeTest3-Regular"
    assert font["OS/2"].fsType == 0  # installable
    upm, hhea = font["head"].unitsPerEm, font["hhea"]
    # one em = one bitmap cell: ascender above, descender below the baseline, spanning the cell
    assert hhea.ascent > 0 > hhea.descent and hhea.ascent - hhea.descent == pytest.approx(upm, abs=2)
    glyph_set = font.getGlyphSet()
    from fontTools.pens.boundsPen import BoundsPen

    for ch in CHARS:
        name = cmap[ord(ch)]
        advance, lsb = font["hmtx"][name]
        pen = BoundsPen(glyph_set)
        glyph_set[name].draw(pen)
        x_min, _, x_max, _ = pen.bounds
        # hmtx from the glyph bounds: the ink starts one side bearing in and the advance adds one more after it
        assert x_min == pytest.approx(SIDE_BEARING * upm, abs=1.5)
        assert advance - x_max == pytest.approx(SIDE_BEARING * upm, abs=2)
        # lsb as the spec wants it: glyf xMin (control box) for TrueType, the outline's xMin for CFF
        assert lsb == (font["glyf"][name].xMin if suffix == ".ttf" else round(x_min))

    bitmaps = alphabet(gen, gen.latents([3])[0], list(CHARS))
    baseline_row = K * (SIZE - result.built.baseline_px)
    text, x0, width = "ALOTX", 8, 6 * K * SIZE
    want = expected_text(bitmaps, text, font, x0, width)
    got = rendered_text(out, text, baseline_row, x0, width)
    assert got.any()
    assert iou(want, got) > 0.8, f"rendered text vs generated bitmaps IoU {iou(want, got):.2f}"

    # the specimen is drawn by FreeType from the written file: its lines hold the font's own shapes
    spec = np.asarray(Image.open(tmp_path / "specimen.png"))
    assert spec.ndim == 2 and (spec < 128).sum() > 0.02 * spec.size


@needs_fonts
def test_font_from_real_glyph_bitmaps_keeps_their_baseline_and_shapes(tmp_path: Path) -> None:
    # Liberation Sans rendered by the glyph builder, rebuilt as a font: the round trip through the tracer and
    # the font geometry puts 'H' and 'x' on the baseline, 'g' below it, and the ink where it was
    from ganime.data.glyphs import render_glyphs

    size = 32
    dataset, _ = render_glyphs(FONTS[:1], "Hxgo", size=size)
    bitmaps = {str(label): img for label, img in zip(dataset.labels, dataset.images)}
    built = build_font(bitmaps, FontInfo("Round Trip"), "ttf", upscale=4)
    path = built.save(tmp_path / "roundtrip.ttf")
    font = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    baseline_row = size - built.baseline_px
    for ch, bitmap in bitmaps.items():
        want = bitmap[..., 0] < 128
        cols = np.flatnonzero(want.any(axis=0))
        ttf = TTFont(str(path))
        lsb = ttf["hmtx"][ttf.getBestCmap()[ord(ch)]][1]
        img = Image.new("L", (size, size), 255)
        # start the pen so that the ink lands on the bitmap's ink columns
        ImageDraw.Draw(img).text((cols[0] - lsb * size / 1000, baseline_row), ch, font=font, fill=0, anchor="ls")
        got = np.asarray(img) < 128
        assert iou(want, got) > 0.75, f"{ch}: IoU {iou(want, got):.2f}"
        bottom = np.flatnonzero(got.any(axis=1))[-1]
        if ch in "Hx":
            assert abs(bottom + 1 - baseline_row) <= 1, (ch, bottom, baseline_row)
        if ch == "g":
            assert bottom + 1 > baseline_row + 3  # the descender


def test_cli_writes_font_specimen_and_interpolation(glyph_model: GlyphModel, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fonts" / "seed5.otf"
    assert main(["font", str(glyph_model.run), "--seed", "5", "--name", "Ganime Sans 5", "--out", str(out)]) == 0
    assert TTFont(str(out))["name"].getDebugName(1) == "Ganime Sans 5"
    specimen = out.with_name("seed5-specimen.png")
    assert specimen.is_file() and "rendered from the font file" in capsys.readouterr().out
    # --chars writes a subset
    subset = tmp_path / "ao.ttf"
    assert main(["font", str(glyph_model.run), "--seed", "5", "--chars", "AO", "--out", str(subset)]) == 0
    assert {chr(c) for c in TTFont(str(subset)).getBestCmap()} == {"A", "O", " "}

    morph = tmp_path / "morph.png"
    assert main(["font", str(glyph_model.run), "--interpolate", "1", "2", "--steps", "3", "--out", str(morph)]) == 0
    ink = np.asarray(Image.open(morph)) < 128
    rows = ink.any(axis=1)
    bands = np.flatnonzero(rows[1:] & ~rows[:-1]).size + int(rows[0])
    assert bands >= 3  # one line of text per step (plus the labels beside them)
    assert not (out.parent / ".seed5.otf.tmp").exists()


def test_bad_inputs_give_one_line_errors_and_write_nothing(glyph_model: GlyphModel, tmp_path: Path, capsys) -> None:
    def run(*args: str) -> str:
        assert main(["font", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        return err

    out = tmp_path / "f.ttf"
    assert "does not exist" in run(str(tmp_path / "no-such-run"), "--out", str(out))
    assert ".ttf or .otf" in run(str(glyph_model.run), "--out", str(tmp_path / "f.woff"))
    assert "--out" in run(str(glyph_model.run))
    assert "cannot draw" in run(str(glyph_model.run), "--chars", "AZ", "--out", str(out))
    assert ".png" in run(str(glyph_model.run), "--interpolate", "1", "2", "--out", str(tmp_path / "m.ttf"))
    assert list(tmp_path.iterdir()) == []


def test_unconditional_model_is_refused(tmp_path: Path, capsys) -> None:
    import torch

    from conftest import write_two_colour_set
    from ganime.config import override, preset
    from ganime.data.dataset import load_dataset
    from ganime.training.trainer import Trainer

    data = load_dataset(str(write_two_colour_set(tmp_path / "img", 8)), 16, 3, (255, 255, 255), str(tmp_path / "c"))
    cfg = override(
        preset("tutorial"), **{"model.resolution": 16, "model.g_width": 8, "model.d_width": 8, "batch_size": 4}
    )
    Trainer(cfg, data, torch.device("cpu"), tmp_path / "run").save()
    assert main(["font", str(tmp_path / "run"), "--out", str(tmp_path / "f.ttf")]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert not (tmp_path / "f.ttf").exists()
