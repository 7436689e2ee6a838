"""`ganime font`: turn one style latent of a class-conditional glyph model into an installable font."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import app
from ganime.errors import ConfigError


@app.command("font")
def font(
    source: Path = typer.Argument(
        ..., help="Run dir, checkpoint dir (ckpt-*) or generator .safetensors of a glyphs model."
    ),
    seed: int = typer.Option(0, help="Style seed: one latent draws every character of the font."),
    name: str = typer.Option(None, help='Font family name (default "Ganime SEED").'),
    out: Path = typer.Option(None, "--out", "-o", help="Font file .ttf or .otf; with --interpolate, a .png."),
    specimen: Path = typer.Option(None, help="Specimen PNG drawn from the written font (default OUT-specimen.png)."),
    chars: str = typer.Option(None, help="Only these characters, e.g. 'A-Z0-9' (default: all the model knows)."),
    truncation: float = typer.Option(1.0, help="Truncation psi in (0, 1]: lower = plainer, cleaner glyphs."),
    interpolate: tuple[int, int] | None = typer.Option(
        None, help="Two seeds A B: a specimen morphing from style A to B."
    ),
    steps: int = typer.Option(7, help="Fonts along the --interpolate walk (ends included)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
) -> None:
    """Write a font (TTF/OTF) from a glyph model, plus a specimen rendered from the font file."""
    if not 0 < truncation <= 1.0:
        raise ConfigError("--truncation must be in (0, 1]")
    if out is None:
        raise ConfigError("say where to write: --out MyFont.ttf (or .otf; a .png with --interpolate)")
    from ganime.device import resolve_device
    from ganime.fonts.make import interpolation_specimen, write_font
    from ganime.generate import load_generator

    if interpolate is None and out.suffix.lower() not in (".ttf", ".otf"):
        raise ConfigError(f"--out {out}: a font file ends in .ttf or .otf")
    gen = load_generator(source, device=resolve_device(device))
    if interpolate is not None:
        path = interpolation_specimen(gen, interpolate[0], interpolate[1], out, steps, chars, truncation)
        typer.echo(f"wrote {path} ({steps} fonts from seed {interpolate[0]} to {interpolate[1]})")
        return
    spec = specimen or out.with_name(f"{out.stem}-specimen.png")
    result = write_font(gen, seed, out, name, chars, truncation, spec)
    b = result.built
    typer.echo(f"wrote {result.font} ({b.flavor}, {len(b.chars)} glyphs, {len(b.data) / 1024:.0f} KiB)")
    typer.echo(f"wrote {result.specimen} (rendered from the font file)")
    if b.empty:
        typer.echo(
            f"warning: no ink for {''.join(b.empty)!r}: those glyphs are empty; try another --seed or train longer"
        )
