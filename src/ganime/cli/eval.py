"""`ganime eval`: sample a trained generator, compare with the data, print a table and write JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ganime.cli import app


@app.command("eval")
def eval_(
    source: str = typer.Argument(
        ..., help="Run dir (latest checkpoint), ckpt-* dir, generator .safetensors or 'pretrained'."
    ),
    data: str = typer.Option(
        None, "--data", help="Real images (folder, .zip, .tar, .npz). Default: the run's own data."
    ),
    metrics: str = typer.Option("swd", "--metrics", "-m", help="Comma list: swd, fid, kid, pr, nn (= memorization), attrs (faces set only), border (near-white share of the border band)."),
    n: int = typer.Option(10_000, "--n", "-n", help="Generated images (and real ones, fewer if the set is smaller)."),
    seed: int = typer.Option(0, help="Seeds the samples (seed..seed+n-1), the real subset and the metrics."),
    inception_weights: Path = typer.Option(
        None, "--inception-weights", help="pt_inception-2015-12-05-6726825d.pth for fid/kid/pr (see docs/metrics.md)."
    ),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto (generator and Inception)."),
    out: Path = typer.Option(None, "--out", help="JSON path (default RUN/eval/<checkpoint>.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report instead of the table."),
) -> None:
    """Measure a generator: SWD (default, no weights), FID/KID (local Inception weights), precision/recall,
    memorization. Writes the report as JSON next to the checkpoint."""
    from ganime.device import resolve_device
    from ganime.eval_report import evaluate, format_table

    report = evaluate(
        source,
        data,
        metrics,
        n,
        seed=seed,
        inception_weights=inception_weights,
        device=resolve_device(device),
        out=out,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_table(report))
