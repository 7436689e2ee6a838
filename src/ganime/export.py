"""Ship a trained generator: ONNX export with a dynamic batch axis and a JSON sidecar for ganime.runtime.

Uses torch's TorchScript exporter (`dynamo=False`): it needs only the `onnx` package, where torch's default
dynamo exporter also needs onnxscript. The graph takes `z` (float32, batch x z_dim) and, for class-conditional
generators, `labels` (int64, batch); it returns `images` (float32, batch x C x H x W, in [-1, 1]).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ganime import __version__
from ganime.errors import ConfigError, MissingDependencyError
from ganime.generate import LoadedGenerator, load_generator
from ganime.runtime import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_LABELS,
    INPUT_Z,
    OUTPUT,
    RUNTIME_LATENTS,
    TORCH_LATENTS,
    file_sha256,
    sidecar_path,
)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # onnxruntime >= 1.17 (the `runtime` extra's floor) runs opsets up to 20
VERIFY_TOLERANCE = 1e-4  # fp32 max |onnxruntime - torch| on [-1, 1] outputs; typical is ~1e-7


def export_onnx(
    source: str | Path | LoadedGenerator,
    out: str | Path = "generator.onnx",
    opset: int = DEFAULT_OPSET,
    use_ema: bool = True,
    verify: bool = True,
) -> Path:
    """Write G (its EMA copy when there is one) as `out` (.onnx) plus its `.json` sidecar; returns the .onnx path.

    Args:
        source: run dir, ckpt-* dir, generator .safetensors, or an already loaded generator.
        verify: run the written file in onnxruntime (when installed) and refuse to keep it if it differs
            from torch by more than VERIFY_TOLERANCE.
    """
    try:
        import onnx  # the TorchScript exporter serialises with it
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs the onnx package: pip install 'ganime[onnx]'"
        ) from None
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out} must end in .onnx (the sidecar goes next to it as .json)")
    if not 9 <= opset <= 20:
        raise ConfigError(
            f"opset {opset} unsupported by the TorchScript exporter; use 9..20 (default {DEFAULT_OPSET})"
        )
    gen = source if isinstance(source, LoadedGenerator) else load_generator(source, "cpu", use_ema)
    G = gen.G if gen.device.type == "cpu" else copy.deepcopy(gen.G).cpu()
    G.eval()
    cond = bool(gen.model.num_classes)

    # Traced at batch 2 so that no size-1 dimension gets specialised; batch is then marked dynamic.
    z = torch.zeros(2, gen.z_dim)
    args: tuple = (z, torch.zeros(2, dtype=torch.long)) if cond else (z,)
    names = [INPUT_Z, INPUT_LABELS] if cond else [INPUT_Z]
    dynamic = {name: {0: "batch"} for name in [*names, OUTPUT]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript); it still works
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                torch.onnx.export(
                    G,
                    args,
                    str(tmp),
                    dynamo=False,
                    input_names=names,
                    output_names=[OUTPUT],
                    dynamic_axes=dynamic,
                    opset_version=opset,
                    do_constant_folding=True,
                )
        onnx.checker.check_model(str(tmp))
        max_diff = _verify(G, tmp, gen.z_dim, gen.model.num_classes) if verify else None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)

    meta = sidecar(gen, out, opset, max_diff)
    side = sidecar_path(out)
    side_tmp = side.with_name(f".{side.name}.tmp{os.getpid()}")
    side_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    os.replace(side_tmp, side)
    log.debug("exported %s (%s): max |onnxruntime - torch| = %s", out, gen.source, max_diff)
    return out


def sidecar(gen: LoadedGenerator, onnx_path: Path, opset: int, max_diff: float | None) -> dict:
    """What a torch-free runtime needs to know about an exported generator (see ganime.runtime)."""
    m = gen.model
    inputs = {INPUT_Z: {"dtype": "float32", "shape": ["batch", m.z_dim]}}
    if m.num_classes:
        inputs[INPUT_LABELS] = {"dtype": "int64", "shape": ["batch"], "range": [0, m.num_classes - 1]}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "file": onnx_path.name,
        "sha256": file_sha256(onnx_path),
        "inputs": inputs,
        "output": {
            "name": OUTPUT,
            "dtype": "float32",
            "shape": ["batch", m.channels, m.resolution, m.resolution],
        },
        "layout": "NCHW",
        "value_range": [-1, 1],
        "z_dim": m.z_dim,
        "resolution": m.resolution,
        "channels": m.channels,
        "num_classes": m.num_classes,
        "arch": m.arch,
        "model": dataclasses.asdict(m),
        "latents": {
            "distribution": "standard normal, float32, shape (z_dim,) per image",
            "torch": TORCH_LATENTS,
            "runtime": RUNTIME_LATENTS,
            "note": "torch's sampler needs torch: the runtime's seeds give other images than the torch path's "
            "for the same seed; pass the same latents to both for the same images",
            "truncation": "z * psi, applied before the graph",
        },
        "source": gen.source,
        "step": gen.meta.get("step"),
        "preset": gen.meta.get("preset"),
        "opset": opset,
        "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
        "ganime_version": __version__,
        "verified_max_abs_diff": max_diff,
    }


def _verify(G: torch.nn.Module, path: Path, z_dim: int, num_classes: int) -> float | None:
    """Max |onnxruntime - torch| over a few fixed latents; raises if above VERIFY_TOLERANCE."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s was not checked against torch", path)
        return None
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, z_dim)).astype(np.float32)  # 5: a batch size other than the traced 2
    feeds = {INPUT_Z: z}
    with torch.no_grad():
        if num_classes:
            labels = np.arange(5, dtype=np.int64) % num_classes
            feeds[INPUT_LABELS] = labels
            want = G(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
        else:
            want = G(torch.from_numpy(z)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT], feeds)[0]
    diff = float(np.abs(got - want).max())
    if got.shape != want.shape or diff > VERIFY_TOLERANCE:
        raise RuntimeError(
            f"the exported graph disagrees with torch (shape {got.shape} vs {want.shape}, max diff {diff:.2e}); "
            "not written"
        )
    return diff
