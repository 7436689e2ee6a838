"""Ship a trained generator: ONNX export with a dynamic batch axis and a JSON sidecar for ganime.onnx_runtime.

Uses torch's TorchScript exporter (`dynamo=False`): it needs only the `onnx` package, where torch's default
dynamo exporter also needs onnxscript. The graph takes `z` (float32, batch x z_dim), for class-conditional
generators `labels` (int64, batch), and `psi` (float32, shape (1,), the truncation; 1 = off); it returns `images`
(float32, batch x C x H x W, in [-1, 1]). Truncation runs inside the graph exactly as the torch path's
`LoadedGenerator.truncate` does (the pulled-toward mean is a constant of the graph), so both backends give the
same images for the same latents and psi.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ganime import __version__
from ganime.errors import ConfigError, MissingDependencyError
from ganime.generate import TRUNCATION_SAMPLES, TRUNCATION_SEED, LoadedGenerator, load_generator
from ganime.io import atomic_path, atomic_write_json
from ganime.latent import PORTABLE, TORCH
from ganime.onnx_runtime import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_LABELS,
    INPUT_PSI,
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
VERIFY_PSI = (1.0, 0.5)  # truncations checked against torch
FP16_LEVELS = 1  # fp16 weights are kept only if no uint8 pixel moves by more than this from torch's


class TruncatedGenerator(torch.nn.Module):
    """G with the truncation trick as a graph input: forward(z, [labels,] psi) = LoadedGenerator.truncate(z, labels, psi).

    Models with `stem`/`synthesis` pull G's first feature map toward its recorded mean (a buffer, so a constant
    of the exported graph); others scale z toward the origin, as `LoadedGenerator.truncate` does.
    """

    def __init__(self, gen: LoadedGenerator) -> None:
        super().__init__()
        self.G = gen.G
        self.in_feature_space = gen.feature_truncation
        mean = gen.stem_mean().detach().float().cpu() if self.in_feature_space else torch.zeros(1)
        self.register_buffer("mean", mean)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        z, psi = inputs[0], inputs[-1]
        labels = inputs[1] if len(inputs) == 3 else None
        if self.in_feature_space:
            h = self.G.stem(z, labels)
            return self.G.synthesis(self.mean + psi * (h - self.mean))
        z = z * psi
        return self.G(z, labels) if labels is not None else self.G(z)


def export_onnx(
    source: str | Path | LoadedGenerator,
    out: str | Path = "generator.onnx",
    opset: int = DEFAULT_OPSET,
    use_ema: bool = True,
    verify: bool = True,
    weights: str = "fp32",
) -> Path:
    """Write G (its EMA copy when there is one) as `out` (.onnx) plus its `.json` sidecar; returns the .onnx path.

    Args:
        source: run dir, ckpt-* dir, generator .safetensors, or an already loaded generator.
        verify: run the written file in onnxruntime (when installed) and refuse to keep it if it differs
            from torch by more than VERIFY_TOLERANCE.
        weights: "fp32"; "fp16" (weights stored in half precision, computed in float32: half the download)
            refused unless its uint8 images are within FP16_LEVELS of torch's; "auto" = fp16 where it keeps that
            bound, else fp32 (what the browser page uses).
    """
    if weights not in ("fp32", "fp16", "auto"):
        raise ConfigError(f"weights {weights!r} unknown; use fp32, fp16 or auto")
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
    if gen.device.type != "cpu":
        gen = dataclasses.replace(gen, G=copy.deepcopy(gen.G).cpu(), device=torch.device("cpu"), _stem_mean=None)
    gen.G.eval()
    G = TruncatedGenerator(gen).eval()
    cond = bool(gen.model.num_classes)

    # Traced at batch 2 so that no size-1 dimension gets specialised; batch is then marked dynamic.
    # psi is traced at 0.5, not 1, so that the exporter cannot fold the truncation away.
    z, psi = torch.zeros(2, gen.z_dim), torch.full((1,), 0.5)
    args: tuple = (z, torch.zeros(2, dtype=torch.long), psi) if cond else (z, psi)
    names = [INPUT_Z, INPUT_LABELS, INPUT_PSI] if cond else [INPUT_Z, INPUT_PSI]
    dynamic = {name: {0: "batch"} for name in [*names[:-1], OUTPUT]}
    with atomic_path(out) as tmp:  # a failed check or verification leaves no file (nor an older one changed)
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
        max_diff = _verify(gen, tmp) if verify else None
        stored = "fp32"
        if weights != "fp32":
            levels = _try_fp16(gen, tmp, weights == "fp16")
            if levels is not None:
                stored, max_diff = "fp16", levels * 2 / 255  # on the [-1, 1] scale, as the fp32 figure

    meta = sidecar(gen, out, opset, max_diff) | {"weights": stored}
    atomic_write_json(sidecar_path(out), meta, newline=True)
    log.debug("exported %s (%s): max |onnxruntime - torch| = %s", out, gen.source, max_diff)
    return out


def sidecar(gen: LoadedGenerator, onnx_path: Path, opset: int, max_diff: float | None) -> dict:
    """What a torch-free runtime needs to know about an exported generator (see ganime.onnx_runtime)."""
    m = gen.model
    inputs = {INPUT_Z: {"dtype": "float32", "shape": ["batch", m.z_dim]}}
    if m.num_classes:
        inputs[INPUT_LABELS] = {"dtype": "int64", "shape": ["batch"], "range": [0, m.num_classes - 1]}
    inputs[INPUT_PSI] = {"dtype": "float32", "shape": [1], "range": [0, 1], "default": 1.0}
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
        "latents": latents_entry(gen),
        "truncation": truncation_entry(gen),
        "source": gen.source,
        "step": gen.meta.get("step"),
        "preset": gen.meta.get("preset"),
        "opset": opset,
        "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
        "ganime_version": __version__,
        "verified_max_abs_diff": max_diff,
        **({"directions": gen.directions.sidecar_entry()} if len(gen.directions) else {}),
    }


def _try_fp16(gen: LoadedGenerator, path: Path, required: bool) -> int | None:
    """Store `path`'s float32 weights as fp16 in place if its uint8 images stay within FP16_LEVELS of torch's;
    returns the largest difference in uint8 levels, or None (file unchanged) when fp16 would break the bound.

    path: the export's temporary file (written in place: nobody reads it before it is renamed)."""
    import onnx

    model = onnx.load(str(path))
    _fp16_weights(model)
    half = model.SerializeToString()  # what onnx.save writes
    levels = _verify_levels(gen, half)
    if levels is not None and levels <= FP16_LEVELS:
        path.write_bytes(half)
        return levels
    why = "onnxruntime is not installed to check them" if levels is None else f"by {levels}/255"
    if required:
        raise ConfigError(f"fp16 weights move images more than {FP16_LEVELS}/255 ({why}); export fp32")
    log.info("fp16 weights move images %s (bound %d/255): kept fp32", why, FP16_LEVELS)
    return None


def _fp16_weights(model) -> None:
    """Weights (float32 initializers of 16+ values) stored as fp16, each Cast back to float32 where it is read:
    the graph computes in float32 as before (onnxruntime-web's WASM backend has no fast fp16 arithmetic)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= 16:
            inits.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT))
        else:
            inits.append(init)
    nodes = casts + list(graph.node)
    graph.ClearField("initializer")
    graph.initializer.extend(inits)
    graph.ClearField("node")
    graph.node.extend(nodes)


def latents_entry(gen: LoadedGenerator) -> dict:
    """The sidecar's "latents": the generator's seed -> z scheme, and whether seeds agree across backends."""
    entry = {"scheme": gen.latent_scheme, "distribution": "standard normal, float32, shape (z_dim,) per image"}
    if gen.latent_scheme == PORTABLE:
        return entry | {
            "torch": "ganime.latent.portable_latents", "runtime": "ganime.latent.portable_latents",
            "browser": "latent.js seedLatent", "same_faces_everywhere": True,
        }
    return entry | {
        "torch": TORCH_LATENTS, "runtime": RUNTIME_LATENTS, "same_faces_everywhere": False,
        "note": f"this generator was saved before portable latents (scheme {TORCH}) and keeps torch's sampler, "
        "which needs torch: the runtime's seeds give other images than the torch path's; pass the same "
        "latents to both for the same images",
    }


def truncation_entry(gen: LoadedGenerator) -> dict:
    """The sidecar's "truncation": how psi acts, and the mean it pulls toward (a constant inside the graph)."""
    if not gen.feature_truncation:
        return {"input": INPUT_PSI, "space": "z", "rule": "z * psi (toward the origin)", "mean": None}
    mean = gen.stem_mean().detach().float().cpu().numpy()
    return {
        "input": INPUT_PSI,
        "space": "G.stem (G's first feature map)",
        "rule": "h = mean + psi * (h - mean), as LoadedGenerator.truncate; psi = 1 is off",
        "mean": {
            "shape": list(mean.shape),
            "sha256_float32": hashlib.sha256(np.ascontiguousarray(mean, np.float32).tobytes()).hexdigest(),
            "how": f"average of G.stem over {TRUNCATION_SAMPLES} latents drawn by torch.randn from seed "
            f"{TRUNCATION_SEED} (fixed at export; every backend reads it from the graph)",
        },
    }


def _verify_levels(gen: LoadedGenerator, model: Path | bytes) -> int | None:
    """Max |onnxruntime - torch| in uint8 levels over fixed latents and VERIFY_PSI; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from ganime.onnx_runtime import to_uint8

    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    worst = 0
    for feeds, want in _verify_cases(gen):
        got = to_uint8(sess.run([OUTPUT], feeds)[0]).astype(np.int16)
        worst = max(worst, int(np.abs(got - to_uint8(want).astype(np.int16)).max()))
    return worst


def _verify_cases(gen: LoadedGenerator):
    """(onnxruntime feeds, torch's float32 images) for fixed latents at each VERIFY_PSI."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, gen.z_dim)).astype(np.float32)  # 5: a batch size other than the traced 2
    labels = np.arange(5, dtype=np.int64) % gen.model.num_classes if gen.model.num_classes else None
    for psi in VERIFY_PSI:
        feeds = {INPUT_Z: z, INPUT_PSI: np.full((1,), psi, np.float32)}
        if labels is not None:
            feeds[INPUT_LABELS] = labels
        with torch.no_grad():
            want = gen.truncate(torch.from_numpy(z), None if labels is None else torch.from_numpy(labels), psi).numpy()
        yield feeds, want


def _verify(gen: LoadedGenerator, path: Path) -> float | None:
    """Max |onnxruntime - torch| over fixed latents and VERIFY_PSI; raises if above VERIFY_TOLERANCE."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s was not checked against torch", path)
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = 0.0
    for feeds, want in _verify_cases(gen):
        got = sess.run([OUTPUT], feeds)[0]
        if got.shape != want.shape:
            raise RuntimeError(f"the exported graph returns shape {got.shape}, torch {want.shape}; not written")
        diff = max(diff, float(np.abs(got - want).max()))
    if diff > VERIFY_TOLERANCE:
        raise RuntimeError(f"the exported graph disagrees with torch (max diff {diff:.2e}); not written")
    return diff
