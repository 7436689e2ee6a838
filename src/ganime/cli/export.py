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
    weights: Annotated[
        str, typer.Option(help="fp32, fp16 (half the bytes; refused if images move over 1/255) or auto.")
    ] = "fp32",
    web: Annotated[
        Path | None,
        typer.Option(help="Write the in-browser page here instead (static files: page, ONNX, onnxruntime-web)."),
    ] = None,
    ort_dir: Annotated[
        Path | None,
        typer.Option(help="With --web: onnxruntime-web's files (node_modules/onnxruntime-web), else fetched with npm."),
    ] = None,
    webgpu: Annotated[bool, typer.Option(help="With --web: onnxruntime-web's WebGPU build (28.9 MB, not 14.9).")] = False,
) -> None:
    """Export the generator as ONNX with a dynamic batch axis; run it with `ganime generate --backend onnxruntime`
    or, without torch, `python -m ganime.onnx_runtime`; or, with --web DIR, as a static page that draws its faces in
    the visitor's browser."""
    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}; use onnx")
    from ganime.export import export_onnx
    from ganime.onnx_runtime import read_sidecar

    if web is not None:
        from ganime.web.site import write_site

        files = write_site(run, web, ort_dir=ort_dir, webgpu=webgpu, use_ema=ema)
        size = sum(f.stat().st_size for f in files) / 1e6
        weights = read_sidecar(web / "generator.onnx")["weights"]
        typer.echo(f"wrote the browser page to {web}: {len(files)} files, {size:.1f} MB ({weights} weights); "
                   f"serve the folder as static files, e.g. python -m http.server -d {web}")
        return
    path = export_onnx(run, out, opset=opset, use_ema=ema, weights=weights)
    meta = read_sidecar(path)
    shape = f"{meta['channels']}x{meta['resolution']}x{meta['resolution']}"
    cond = f", {meta['num_classes']} classes" if meta["num_classes"] else ""
    diff = meta["verified_max_abs_diff"]
    check = (
        f", max |onnxruntime - torch| {diff:.1e}" if diff is not None else ", not checked (no onnxruntime)"
    )
    typer.echo(
        f"wrote {path} and {path.with_suffix('.json')}: z {meta['z_dim']} -> {shape}{cond}, opset {opset}, "
        f"{meta['weights']} weights{check}"
    )
    if not meta["latents"]["same_faces_everywhere"]:
        typer.echo(f"note: {meta['latents']['note']}")
