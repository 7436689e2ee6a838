"""`ganime data info` and `ganime data fetch`."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import data_app


@data_app.command("info")
def info(
    path: Path = typer.Argument(None, help="Folder, .zip, .tar(.gz) or .npz of images (default: the shipped emoji set)."),
    size: int = typer.Option(64, help="Square size to decode and cache at (32, 64, 128, 256)."),
    refresh: bool = typer.Option(False, help="Decode again even if a cache exists."),
    cache_dir: Path = typer.Option(None, help="Where decoded caches live (default ~/.cache/ganime/datasets)."),
    max_archive_mb: int = typer.Option(16384, "--max-archive-mb", help="Stop reading a .zip/.tar after this many MB uncompressed."),
) -> None:
    """Scan a data set: count usable and skipped images (with reasons), decode speed, and cache it."""
    from ganime.data.dataset import load_dataset

    ds = load_dataset(path, size, cache_dir=cache_dir, refresh=refresh, max_archive_bytes=max_archive_mb * 2**20)
    s = ds.summary
    typer.echo(f"source:    {s['source']}")
    typer.echo(f"images:    {s['used']} usable of {s['files_seen']} files, decoded at {size}x{size}")
    skipped = s.get("skipped") or {}
    if skipped:
        typer.echo(f"skipped:   {sum(skipped.values())}")
        for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
            typer.echo(f"  {n:6d}  {reason}  (e.g. {s['skipped_examples'][reason]})")
    if s.get("classes"):
        typer.echo(f"labels:    {len(s['classes'])} classes")
    typer.echo(f"decode:    {s['decode_seconds']} s ({s['decode_images_per_s']} images/s when first cached)")


@data_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Data set name: anime-faces (Kaggle soumikrakshit/anime-faces)."),
    dest: Path = typer.Argument(..., help="Folder to download into."),
) -> None:
    """Download a known data set with the official Kaggle client (pip install 'ganime[kaggle]')."""
    from ganime.data.fetch import fetch as do_fetch

    out = do_fetch(name, dest)
    typer.echo(f"done: train with  ganime train --data {out}")
