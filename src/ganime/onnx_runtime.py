"""Torch-free inference for generators exported by `ganime export`: numpy + onnxruntime + Pillow only.

(Not to be confused with training's `precision.Runtime` and a run's runtime.json: those are how training runs.)

    gen = OnnxGenerator("generator.onnx")          # reads generator.json, the sidecar written with it
    images = gen.from_seeds(range(16))               # uint8 (16, H, W, C)
    save_png(make_grid(images), "grid.png")          # ganime.io's, also importable from here

or, with nothing but the `runtime` extra installed: `python -m ganime.onnx_runtime generator.onnx --n 16`.

Seeds. Generators trained since latent schemes exist record "splitmix64-box-muller" (ganime.latent.PORTABLE) in
their sidecar: a seed gives the same latent here as in `ganime generate` (torch) and the browser page, so the
same face. Exports of older generators (scheme "torch-randn", or none recorded) drew z with torch's CPU
sampler, which cannot be reproduced without torch; for them this module draws
`numpy.random.default_rng(s).standard_normal(z_dim)` (float32) as it always did, so a seed gives another
(equally valid) image here than in torch. For the same image on both paths, pass the latents themselves.

This module must not import torch, nor any ganime module that does (ganime.errors, ganime.io and ganime.latent
do not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ganime.errors import CheckpointError, ConfigError, GanimeError, MissingDependencyError
from ganime.io import GRID_TILE, make_grid, save_png
from ganime.latent import PORTABLE, TORCH, check_seeds, edit_offset, parse_edits, portable_latents

log = logging.getLogger(__name__)

FORMAT = "ganime-onnx"  # "format" of the JSON sidecar written next to the .onnx file
FORMAT_VERSION = 2  # 2: "latents.scheme" (an older runtime would draw numpy seeds for a portable export)
INPUT_Z, INPUT_LABELS, INPUT_PSI, OUTPUT = "z", "labels", "psi", "images"
RUNTIME_LATENTS = "numpy.random.default_rng(seed).standard_normal(z_dim).astype(float32)"  # TORCH-scheme exports
TORCH_LATENTS = "torch.randn(z_dim, generator=torch.Generator().manual_seed(seed))"
BATCH = 256  # images per onnxruntime call, as the torch path


def seed_latents(seeds: Iterable[int], z_dim: int, scheme: str = TORCH) -> np.ndarray:
    """One float32 latent per seed: PORTABLE's (the torch path's too), else numpy's default_rng (see module doc)."""
    seeds = check_seeds(seeds)
    if scheme == PORTABLE:
        return portable_latents(seeds, z_dim)
    zs = [np.random.default_rng(s).standard_normal(z_dim).astype(np.float32) for s in seeds]
    return np.stack(zs) if zs else np.zeros((0, z_dim), np.float32)


def latent_scheme(meta: dict) -> str:
    """The latent scheme an export's sidecar records; TORCH for sidecars written before schemes were recorded."""
    scheme = (meta.get("latents") or {}).get("scheme", TORCH)
    if scheme not in (PORTABLE, TORCH):
        raise CheckpointError(f"unknown latent scheme {scheme!r} in the sidecar; upgrade ganime")
    return scheme


def sidecar_path(path: str | Path) -> Path:
    """generator.onnx -> generator.json."""
    return Path(path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (the sidecar records the .onnx file's, so a mismatched pair is caught)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sidecar(path: str | Path) -> dict:
    """The sidecar of an exported .onnx file, checked against the file it describes."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{side} is missing: an exported generator needs the JSON written with it"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{side} is not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'{side} is not a ganime ONNX description (no "format": "{FORMAT}")')
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{side} was written by a newer ganime (format {meta['format_version']}); upgrade"
        )
    missing = [k for k in ("z_dim", "resolution", "channels", "num_classes", "sha256") if k not in meta]
    if missing:
        raise CheckpointError(f"{side} lacks {', '.join(missing)}")
    if file_sha256(path) != meta["sha256"]:
        raise CheckpointError(f"{side} describes another export than {path} (SHA-256 differs); export again")
    return meta


class OnnxGenerator:
    """An exported generator in an onnxruntime session; the torch-free twin of ganime.generate.LoadedGenerator."""

    def __init__(self, path: str | Path, threads: int = 0, providers: Sequence[str] | None = None) -> None:
        """Args: threads: onnxruntime intra-op threads (0 = its default); providers: default CPU only."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError(
                "onnxruntime is not installed: pip install 'ganime[runtime]' (numpy, onnxruntime, Pillow)"
            ) from None
        self.path = Path(path)
        self.meta = read_sidecar(self.path)
        self.latent_scheme = latent_scheme(self.meta)
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as e:  # noqa: BLE001  (onnxruntime's errors, e.g. InvalidProtobuf, subclass Exception only)
            raise CheckpointError(f"onnxruntime cannot load {self.path} ({e})") from None
        names = {i.name for i in self.session.get_inputs()}
        # files from ganime < 0.1.1 have no psi input: their truncation is z * psi, outside the graph
        self.has_psi = INPUT_PSI in (self.meta.get("inputs") or {})
        want = {INPUT_Z, INPUT_LABELS} if self.num_classes else {INPUT_Z}
        want |= {INPUT_PSI} if self.has_psi else set()
        if names != want:
            raise CheckpointError(
                f"{self.path} takes inputs {sorted(names)}, its sidecar says {sorted(want)}"
            )

    @property
    def z_dim(self) -> int:
        return int(self.meta["z_dim"])

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    def latents(self, seeds: Iterable[int]) -> np.ndarray:
        """One latent per seed: the torch path's for PORTABLE exports, numpy's default_rng for older ones."""
        return seed_latents(seeds, self.z_dim, self.latent_scheme)

    @property
    def direction_names(self) -> list[str]:
        """Names of the edit directions the sidecar carries (ganime.directions; [] when none)."""
        return [str(d["name"]) for d in (self.meta.get("directions") or {}).get("directions", [])]

    def direction_matrix(self) -> np.ndarray:
        """float32 (K, z_dim): the sidecar's unit direction vectors, in `direction_names` order."""
        rows = [d["vector"] for d in (self.meta.get("directions") or {}).get("directions", [])]
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1) if rows else np.zeros((0, self.z_dim), np.float32)
        if matrix.shape[1] != self.z_dim:
            raise CheckpointError(f"{sidecar_path(self.path)}: its directions are not {self.z_dim} values each")
        return matrix

    def edit(self, z: np.ndarray, edits: dict[str, float] | Sequence[str] | None) -> np.ndarray:
        """Latents moved by edits ({name: amount} or ["name=amount", ...]): z + sum amount * direction, in float32
        exactly as the torch path (ganime.latent.edit_offset), before truncation."""
        z = np.asarray(z, dtype=np.float32)
        if not edits:
            return z
        names = self.direction_names
        edits = parse_edits(edits, names) if not isinstance(edits, dict) else edits
        return z + edit_offset(edits, names, self.direction_matrix())

    def forward(self, z: np.ndarray, labels: np.ndarray | None = None, truncation: float = 1.0) -> np.ndarray:
        """Latents (N, z_dim) -> float32 images (N, C, H, W) in [-1, 1], exactly what the ONNX graph returns.

        truncation: psi in (0, 1], computed as the torch path's LoadedGenerator.truncate (1 = off).
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ConfigError(f"latents must have shape (N, {self.z_dim}), got {z.shape}")
        if not 0 < truncation <= 1.0:
            raise ConfigError(f"truncation must be in (0, 1], got {truncation}")
        if self.has_psi:
            feeds = {INPUT_Z: np.ascontiguousarray(z), INPUT_PSI: np.full((1,), truncation, np.float32)}
        else:
            feeds = {INPUT_Z: np.ascontiguousarray(z * np.float32(truncation) if truncation != 1.0 else z)}
        if self.num_classes:
            if labels is None:
                raise ConfigError("this generator is class-conditional; pass labels")
            labels = np.asarray(labels)
            if labels.shape != (len(z),) or not np.issubdtype(labels.dtype, np.integer):
                raise ConfigError(
                    f"labels must be {len(z)} integers, got shape {labels.shape} {labels.dtype}"
                )
            if len(labels) and not (0 <= labels.min() and labels.max() < self.num_classes):
                raise ConfigError(f"labels must be in 0..{self.num_classes - 1}")
            feeds[INPUT_LABELS] = labels.astype(np.int64)
        elif labels is not None:
            raise ConfigError("this generator is not class-conditional; do not pass labels")
        if len(z) == 0:
            return np.zeros((0, self.channels, self.resolution, self.resolution), np.float32)
        return self.session.run([OUTPUT], feeds)[0]

    def images(self, z: np.ndarray, labels: np.ndarray | None = None, truncation: float = 1.0) -> np.ndarray:
        """Latents (N, z_dim) -> uint8 images (N, H, W, C); truncation psi as the torch path (see `forward`)."""
        z = np.asarray(z, dtype=np.float32)
        labels = None if labels is None else np.asarray(labels)
        if len(z) == 0:
            return to_uint8(self.forward(z, labels, truncation))  # still checks shapes and labels
        out = [
            to_uint8(self.forward(z[i : i + BATCH], None if labels is None else labels[i : i + BATCH], truncation))
            for i in range(0, len(z), BATCH)
        ]
        return np.concatenate(out)

    def from_seeds(
        self, seeds: Iterable[int], truncation: float = 1.0, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """uint8 images for a list of seeds: the same seed gives the same image (everywhere, for PORTABLE exports)."""
        return self.images(self.latents(seeds), labels, truncation)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] NCHW float -> uint8 NHWC, with the same float32 arithmetic as ganime.generate.to_uint8."""
    x = np.asarray(x, dtype=np.float32)
    x = np.clip((np.clip(x, -1, 1) + np.float32(1)) * np.float32(127.5) + np.float32(0.5), 0, 255)
    return x.astype(np.uint8).transpose(0, 2, 3, 1)


def write_pngs(
    source: str | Path,
    n: int = 64,
    seed: int = 0,
    grid: str | Path | None = None,
    outdir: str | Path | None = None,
    truncation: float = 1.0,
    latents: np.ndarray | None = None,
    threads: int = 0,
    edits: dict[str, float] | Sequence[str] | None = None,
) -> list[str]:
    """Generate from an exported generator to a grid PNG and/or one PNG per image; returns what was written.

    Seeds seed..seed+n-1 (`OnnxGenerator.latents`), or the rows of `latents` when given. Class-conditional generators
    cycle the labels 0, 1, ..., num_classes - 1 as `ganime generate` does.
    """
    if not 0 < truncation <= 1.0:
        raise ConfigError("--truncation must be in (0, 1]")
    gen = OnnxGenerator(source, threads=threads)
    if latents is None:
        if n < 1:
            raise ConfigError("--n must be at least 1")
        seeds = list(range(seed, seed + n))
        z = gen.latents(seeds)
        names = [f"seed{s:06d}.png" for s in seeds]
        what = f"seeds {seed}..{seed + n - 1}"
        if gen.latent_scheme != PORTABLE:
            what += " drawn with numpy: this export predates portable latents, torch shows other faces"
    else:
        z = np.asarray(latents, dtype=np.float32)
        n = len(z)
        if n < 1:
            raise ConfigError("the latents file holds no latents")
        names = [f"latent{i:06d}.png" for i in range(n)]
        what = "given latents"
    labels = np.arange(n) % gen.num_classes if gen.num_classes else None
    images = gen.images(gen.edit(z, edits), labels, truncation)
    if grid is None and outdir is None:
        grid = Path("grid.png")
    done = []
    if grid is not None:
        done.append(f"wrote {save_png(make_grid(images, min_tile=GRID_TILE), grid)} ({n} images, {what})")
    if outdir is not None:
        for name, img in zip(names, images):
            save_png(img, Path(outdir) / name)
        done.append(f"wrote {n} PNGs to {outdir}")
    return done


def main(argv: list[str] | None = None) -> int:
    """`python -m ganime.onnx_runtime generator.onnx ...`: generate PNGs without torch or typer."""
    p = argparse.ArgumentParser(
        prog="python -m ganime.onnx_runtime",
        description="Generate images from a generator exported with `ganime export` (numpy + onnxruntime only). "
        "A seed gives the same image as `ganime generate --seed` for generators trained with portable latents "
        "(the sidecar's latents.scheme); older exports draw seeds with numpy: pass --latents for identical images.",
    )
    p.add_argument("source", type=Path, help="exported .onnx file (its .json sidecar must sit next to it)")
    p.add_argument("-n", "--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="first seed; image i uses seed + i")
    p.add_argument(
        "--latents", type=Path, help=".npy of shape (N, z_dim): use these latents instead of seeds"
    )
    p.add_argument("--grid", type=Path, help="write a grid PNG here (default grid.png without --outdir)")
    p.add_argument("--outdir", type=Path, help="write one PNG per image here")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi in (0, 1]")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    p.add_argument("--edit", action="append", default=[], metavar="NAME=AMOUNT",
                   help="move every face along a direction the sidecar carries (repeatable), e.g. hair-red=2")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        latents = None
        if args.latents is not None:
            try:
                latents = np.load(args.latents, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ConfigError(f"cannot read latents {args.latents}: {e}") from None
        for line in write_pngs(
            args.source, args.n, args.seed, args.grid, args.outdir, args.truncation, latents, args.threads, args.edit
        ):
            print(line)
    except GanimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
