"""`ganime export`: write a trained generator as ONNX (+ JSON sidecar) for torch-free inference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ganime.cli import app
from ganime.errors import ConfigError


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="Run dir, checkpoint dir (ckpt-*) or generator .safetensors.")],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output .onnx file; the sidecar is written next to it as .json."),
    ] = Path("generator.onnx"),
    opset: Annotated[int, typer.Option(help="ONNX opset (9..20).")] = 17,
    ema: Annotated[
        bool, typer.Option("--ema/--no-ema", help="Export the EMA generator when the run has one.")
    ] = True,
) -> None:
    """Export the generator as ONNX with a dynamic batch axis; run it with `ganime generate --backend onnxruntime`
    or, without torch, `python -m ganime.runtime`."""
    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}; use onnx")
    from ganime.export import export_onnx
    from ganime.runtime import read_sidecar

    path = export_onnx(run, out, opset=opset, use_ema=ema)
    meta = read_sidecar(path)
    shape = f"{meta['channels']}x{meta['resolution']}x{meta['resolution']}"
    cond = f", {meta['num_classes']} classes" if meta["num_classes"] else ""
    diff = meta["verified_max_abs_diff"]
    check = (
        f", max |onnxruntime - torch| {diff:.1e}" if diff is not None else ", not checked (no onnxruntime)"
    )
    typer.echo(
        f"wrote {path} and {path.with_suffix('.json')}: z {meta['z_dim']} -> {shape}{cond}, opset {opset}{check}"
    )
