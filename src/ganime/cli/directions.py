"""`ganime directions`: find a generator's edit directions, store them beside its weights, draw a preview sheet."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import app


@app.command("directions")
def directions(
    source: Path = typer.Argument(
        None, help="Run dir, checkpoint dir, generator .safetensors, or 'pretrained' (the default)."
    ),
    out: Path = typer.Option(
        None, help="Directions file to write (.safetensors, a .json beside it). Default: beside the weights "
        "(RUN/directions.safetensors, or G.directions.safetensors for a generator file G.safetensors)."
    ),
    samples: int = typer.Option(10_000, help="Faces sampled and labelled by the attribute classifier."),
    sefa: int = typer.Option(8, help="Label-free SeFa directions to keep (0 = none)."),
    attributes: bool = typer.Option(
        None, "--attributes/--no-attributes",
        help="Named directions from the faces attribute classifier (default: for generators trained on faces).",
    ),
    gallery: str = typer.Option(
        None, help="A gallery (.sqlite, a directory or a mongodb:// URI): a direction per tag with enough faces."
    ),
    model_id: str = typer.Option(None, help="With --gallery: only faces saved from this model id."),
    conditional: bool = typer.Option(
        True, "--conditional/--no-conditional",
        help="Remove from each named direction its part along the other attributes' directions (InterFaceGAN).",
    ),
    preview: Path = typer.Option(None, help="Preview sheet PNG (default: beside the directions file)."),
    seed: int = typer.Option(7, help="Seed of the face in the preview sheet."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
) -> None:
    """Find edit directions (SeFa, attribute and tag directions) and write them with a preview sheet."""
    from ganime.device import resolve_device
    from ganime.direction_fit import compute_directions, preview_sheet
    from ganime.directions import directions_path, save_directions
    from ganime.errors import ConfigError
    from ganime.generate import PRETRAINED, load_generator
    from ganime.io import save_png

    if samples < 100:
        raise ConfigError("--samples must be at least 100")
    if not 0 <= sefa <= 512:
        raise ConfigError("--sefa must be in 0..512")
    gen = load_generator(source or Path(PRETRAINED), device=resolve_device(device))
    tagged = None
    if gallery is not None:
        from ganime.web.store import open_store

        with open_store(gallery, create=False) as store:
            items, offset = [], 0
            while batch := store.list(limit=100, offset=offset):
                items += [(it.seed, it.tags) for it in batch if model_id is None or it.model_id == model_id]
                offset += len(batch)
        tagged = items
    found = compute_directions(gen, samples, sefa, attributes, tagged, conditional)
    if not len(found):
        raise ConfigError("no directions found: ask for --sefa N or give labelled faces")
    path = save_directions(found, out if out is not None else directions_path(gen.source))
    sheet = preview if preview is not None else path.with_name(path.name.removesuffix(".safetensors") + "-preview.png")
    save_png(preview_sheet(gen, found, seed), sheet)
    typer.echo(f"wrote {path} ({len(found)} directions: {', '.join(found.names)})")
    for name, why in found.info.get("named", {}).get("checked", {}).get("dropped", {}).items():
        typer.echo(f"left out {name}: {why}")
    typer.echo(f"wrote {sheet} (a row per direction, amounts -3..+3, seed {seed})")
