"""`ganime data emoji`, `ganime data glyphs` and `ganime data crop-faces`: build data sets from fonts or pictures."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from ganime.cli import data_app

DEBIAN_NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def _shape(images) -> str:
    n, h, w, c = images.shape
    return f"{n} images {w}x{h}, {c} channel{'s' if c > 1 else ''}"


@data_app.command("emoji")
def emoji(
    out: Annotated[Path, typer.Option("--out", help="Folder for dataset.npz, labels.csv and preview.png.")],
    font: Annotated[
        Path, typer.Argument(help="Colour emoji font, e.g. Debian's Noto Color Emoji (CBDT bitmaps).")
    ] = DEBIAN_NOTO_EMOJI,
    size: Annotated[int, typer.Option(help="Square image size in pixels.")] = 64,
    codepoints: Annotated[
        str | None, typer.Option(help="Only these code points, e.g. '1F600-1F64F,2764' (default: all).")
    ] = None,
) -> None:
    """Render every single code point of a colour emoji font as RGBA (no ZWJ, skin-tone or flag sequences)."""
    from ganime.data.builders_io import save_dataset
    from ganime.data.emoji import parse_codepoints, render_emoji

    wanted = parse_codepoints(codepoints) if codepoints else None
    dataset, report = render_emoji(font, size=size, codepoints=wanted)
    paths = save_dataset(dataset, out)
    typer.echo(
        f"emoji: {report.rendered} rendered of {report.requested} code points requested "
        f"({report.cmap_codepoints} in the cmap, {report.empty} of those without ink) in {report.seconds:.1f} s"
    )
    typer.echo(
        f"wrote {paths.dataset} ({_shape(dataset.images)}), {paths.labels_csv.name}, {paths.preview.name}"
    )


@data_app.command("glyphs")
def glyphs(
    fonts: Annotated[
        list[Path],
        typer.Argument(help="Font files (.ttf .otf .ttc .otc) and/or folders searched recursively."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for dataset.npz, labels.csv, fonts.csv and preview.png.")
    ],
    chars: Annotated[
        str, typer.Option(help="Characters and ranges, e.g. 'A-Za-z0-9' or 'ABC?!'.")
    ] = "A-Za-z0-9",
    size: Annotated[int, typer.Option(help="Square image size in pixels.")] = 64,
    min_coverage: Annotated[
        float, typer.Option(help="Skip fonts that map less than this share of --chars (0-1).")
    ] = 1.0,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob on the font file name to skip; repeatable.")
    ] = None,
    include_symbol_fonts: Annotated[
        bool, typer.Option(help="Keep symbol fonts (cmap 3/0), which put dingbats on Latin code points.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every skipped font with its reason.")
    ] = False,
) -> None:
    """Render characters from many fonts as grayscale glyphs on one baseline, one scale per font."""
    from ganime.data.builders_io import save_dataset
    from ganime.data.glyphs import render_glyphs
    from ganime.io import atomic_write_text

    dataset, report = render_glyphs(
        fonts,
        chars=chars,
        size=size,
        min_coverage=min_coverage,
        exclude=exclude or (),
        include_symbol_fonts=include_symbol_fonts,
    )
    paths = save_dataset(dataset, out)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["font", "path", "coverage", "status", "rendered", "missing"])
    for f in report.fonts:
        status = f.skipped or "used"
        writer.writerow([f.name, str(f.path), f"{f.coverage:.4f}", status, f.rendered, "".join(f.missing)])
    atomic_write_text(Path(out) / "fonts.csv", text.getvalue())

    for f in report.used:
        missing = f", missing {''.join(f.missing)!r}" if f.missing else ""
        typer.echo(f"  used     {f.name}: coverage {f.coverage:.0%}, {f.rendered} glyphs{missing}")
    if verbose:
        for f in report.skipped:
            typer.echo(f"  skipped  {f.name}: {f.skipped}")
    typer.echo(f"glyphs: {report.summary()}")
    typer.echo(
        f"wrote {paths.dataset} ({_shape(dataset.images)}), {paths.labels_csv.name}, fonts.csv, "
        f"{paths.preview.name}"
    )


@data_app.command("crop-faces")
def crop_faces(
    raw_dir: Annotated[Path, typer.Argument(help="Folder of pictures (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the square PNG crops and faces.csv.")],
    size: Annotated[int, typer.Option(help="Square crop size in pixels.")] = 64,
    margin: Annotated[
        float, typer.Option(help="Share of the face size added on every side of the detected box.")
    ] = 0.25,
    min_face: Annotated[
        int, typer.Option(help="Skip faces smaller than this (pixels of the source picture).")
    ] = 32,
    min_score: Annotated[float, typer.Option(help="Skip detections with a lower likelihood (0-1).")] = 0.5,
) -> None:
    """Detect anime faces and save square crops (needs the faces extra: animeface with Pillow < 12)."""
    from ganime.data.faces import crop_faces as do_crop

    report = do_crop(raw_dir, out, size=size, margin=margin, min_face=min_face, min_score=min_score)
    typer.echo(f"faces: {report.summary()}")
    typer.echo(f"wrote {report.written} crops and faces.csv to {out}")
