"""`ganime generate` (grids, single PNGs, latent walks) and `ganime video` (training timelapse)."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import app
from ganime.errors import ConfigError


@app.command("generate")
def generate(
    source: Path = typer.Argument(
        None, help="Run dir, checkpoint dir (ckpt-*), generator .safetensors, or 'pretrained' (the default: the "
        "modern generator shipped with ganime, trained on the shipped emoji set)."
    ),
    n: int = typer.Option(64, "--n", "-n", help="Number of images."),
    seed: int = typer.Option(0, help="First seed; image i uses seed + i, so seeds are reproducible."),
    grid: Path = typer.Option(None, help="Write a grid PNG here."),
    outdir: Path = typer.Option(None, help="Write one PNG per image here (seed in the file name)."),
    truncation: float = typer.Option(
        1.0, help="Truncation psi in (0, 1]: pulls G's first feature map toward its mean; lower = safer, less varied."
    ),
    interpolate: tuple[int, int] | None = typer.Option(None, help="Two seeds A B: write a latent walk to --out."),
    frames: int = typer.Option(60, help="Frames of the latent walk."),
    out: Path = typer.Option(None, "--out", help="Latent walk output: .mp4 or .gif."),
    scale: int = typer.Option(4, help="Pixel upscaling of the walk video (nearest)."),
    edit: list[str] = typer.Option(
        None, "--edit", help="NAME=AMOUNT, repeatable: move every face along a stored direction (`ganime directions`; "
        "amount in standard deviations of z, e.g. hair-red=2), before truncation."
    ),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
    backend: str = typer.Option(
        "torch",
        help="torch, or onnxruntime for a file from `ganime export` (.onnx files always use it; no torch needed). "
        "A seed gives the same image on both, except for exports of generators saved before portable latents.",
    ),
) -> None:
    """Generate images from a trained generator."""
    if source is None:
        source = Path("pretrained")
    if backend not in ("torch", "onnxruntime"):
        raise ConfigError(f"unknown backend {backend!r}; use torch or onnxruntime")
    if backend == "onnxruntime" or str(source).lower().endswith(".onnx"):
        # torch-free: ganime.onnx_runtime imports only numpy, onnxruntime and Pillow
        from ganime.onnx_runtime import write_pngs

        if interpolate is not None:
            raise ConfigError("--interpolate needs --backend torch")
        for line in write_pngs(source, n, seed, grid, outdir, truncation, edits=edit or None):
            typer.echo(line)
        return
    from ganime.device import resolve_device
    from ganime.generate import interpolate as walk
    from ganime.generate import load_generator, write_video
    from ganime.io import GRID_TILE, make_grid, save_png

    if not 0 < truncation <= 1.0:
        raise ConfigError("--truncation must be in (0, 1]")
    from ganime.directions import parse_edits

    gen = load_generator(source, device=resolve_device(device))
    edits = parse_edits(edit, gen.directions) if edit else {}
    if edits and interpolate is not None:
        raise ConfigError("--edit applies to --n/--seed faces, not to --interpolate")
    if interpolate is not None:
        if out is None:
            raise ConfigError("--interpolate A B needs --out walk.mp4 (or .gif)")
        frames_arr = walk(gen, interpolate[0], interpolate[1], frames, truncation)
        typer.echo(f"wrote {write_video(list(frames_arr), out, fps=24, scale=scale)} ({frames} frames)")
        return
    if n < 1:
        raise ConfigError("--n must be at least 1")
    if grid is None and outdir is None:
        grid = Path("grid.png")
    seeds = list(range(seed, seed + n))
    labels = None
    if gen.model.num_classes:
        import torch

        labels = torch.arange(n) % gen.model.num_classes
    images = gen.images(gen.edited_latents(seeds, edits), labels, truncation)
    shown = "".join(f", {k}={v:+g}" for k, v in edits.items())
    if grid is not None:
        tiles = make_grid(images, min_tile=GRID_TILE)
        typer.echo(f"wrote {save_png(tiles, grid)} ({n} images, seeds {seed}..{seed + n - 1}{shown})")
    if outdir is not None:
        for s, img in zip(seeds, images):
            save_png(img, Path(outdir) / f"seed{s:06d}.png")
        typer.echo(f"wrote {n} PNGs to {outdir}")


@app.command("video")
def video(
    run: Path = typer.Argument(..., help="Run directory with samples/*.png grids."),
    out: Path = typer.Option(None, help="Output base name (default RUN/timelapse): writes .mp4 and .gif."),
    fps: int = typer.Option(4, help="Frames (grids) per second."),
) -> None:
    """Turn a run's per-epoch sample grids into a timelapse MP4 and GIF."""
    from ganime.generate import run_video

    for p in run_video(run, out, fps):
        typer.echo(f"wrote {p}")
