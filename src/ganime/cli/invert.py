"""`ganime invert`: search by picture, the latent whose face is nearest to a picture."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import app


@app.command("invert")
def invert(
    source: Path = typer.Argument(..., help="Run dir, checkpoint dir, generator .safetensors, or 'pretrained'."),
    picture: Path = typer.Argument(..., help="The picture to match (PNG, JPEG, ...; its centred square is used)."),
    out: Path = typer.Option(Path("inverted"), help="Folder for face.png, latent.npy and permalink.txt."),
    steps: int = typer.Option(150, help="Adam steps refining the best seeds' latents."),
    seeds: int = typer.Option(512, help="Seeds 0..N-1 whose faces are searched for a start."),
    time_budget: float = typer.Option(None, help="Stop refining after this many seconds."),
    threads: int = typer.Option(
        0, help="CPU threads for torch (0 = torch's default). On a machine busy with other jobs 1 is fastest."
    ),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
) -> None:
    """Find the latent whose face is nearest to PICTURE; write the face, the latent and a permalink fragment."""
    import numpy as np

    from ganime.device import resolve_device
    from ganime.errors import ConfigError
    from ganime.generate import load_generator
    from ganime.invert import invert as search
    from ganime.invert import load_picture
    from ganime.io import atomic_path, atomic_write_text, save_png
    from ganime.latent import encode_latent

    if steps < 0 or seeds < 1 or threads < 0:
        raise ConfigError("--steps and --threads must be >= 0 and --seeds >= 1")
    image = load_picture(picture)  # before loading the generator: a mistyped path fails at once
    gen = load_generator(source, device=resolve_device(device))
    result = search(gen, image, steps=steps, seeds=seeds, time_budget_s=time_budget, threads=threads)
    out.mkdir(parents=True, exist_ok=True)
    save_png(result.image, out / "face.png")
    with atomic_path(out / "latent.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, result.z.numpy().astype(np.float32))
    fragment = f"#z={encode_latent(result.z.numpy())}&t=1"
    atomic_write_text(out / "permalink.txt", fragment + "\n")
    typer.echo(
        f"wrote {out / 'face.png'} and {out / 'latent.npy'} (loss {result.start_loss:.4f} at seed {result.seed} "
        f"-> {result.loss:.4f} after {result.steps} steps, {result.seconds:.1f} s)"
    )
    typer.echo(fragment)
