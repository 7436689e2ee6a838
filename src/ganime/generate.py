"""Use a trained generator: load it from weights + JSON alone, sample, grids, latent walks, videos."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ganime import __version__
from ganime.checkpoint import MODEL_FILE, PICKLE_SUFFIXES, read_state, resolve_checkpoint
from ganime.config import ModelConfig, TrainConfig
from ganime.errors import CheckpointError, ConfigError
from ganime.models import build_generator

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1


@dataclass
class LoadedGenerator:
    """A generator in eval mode with what is needed to sample from it."""

    G: nn.Module
    model: ModelConfig
    source: str
    device: torch.device
    meta: dict

    @property
    def z_dim(self) -> int:
        return self.model.z_dim

    @property
    def resolution(self) -> int:
        return self.model.resolution

    def latents(self, seeds: list[int]) -> Tensor:
        """One latent per seed: z = N(0, I) from a CPU generator seeded with that seed (device-independent)."""
        zs = []
        for s in seeds:
            if not 0 <= int(s) <= MAX_SEED:
                raise ConfigError(f"seed {s} out of range 0..{MAX_SEED}")
            g = torch.Generator().manual_seed(int(s))
            zs.append(torch.randn(self.z_dim, generator=g))
        return torch.stack(zs)

    @torch.no_grad()
    def images(self, z: Tensor, labels: Tensor | None = None, truncation: float = 1.0) -> np.ndarray:
        """Latents (N, z_dim) -> uint8 images (N, H, W, C)."""
        if truncation != 1.0:
            # z ~ N(0, I) has no learned mean latent in DCGAN-style models: truncate toward the origin,
            # the "truncation trick" of BigGAN (Brock et al. 2019) in its simplest form.
            z = z * truncation
        if self.model.num_classes and labels is None:
            raise ConfigError("this generator is class-conditional; pass labels")
        out = []
        for i in range(0, len(z), 256):
            zi = z[i : i + 256].to(self.device, torch.float32)
            li = labels[i : i + 256].to(self.device) if labels is not None else None
            out.append(to_uint8(self.G(zi, li) if li is not None else self.G(zi)))
        return np.concatenate(out) if out else np.zeros((0, self.resolution, self.resolution, 3), np.uint8)

    def from_seeds(self, seeds: list[int], truncation: float = 1.0, labels: Tensor | None = None) -> np.ndarray:
        """uint8 images for a list of seeds: the same seed gives the same image."""
        return self.images(self.latents(seeds), labels, truncation)


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] NCHW float -> uint8 NHWC (round half up, as torchvision's save_image)."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def load_generator(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """Load G (its EMA copy when there is one) from a run dir, a ckpt-* dir or a .safetensors generator file.

    Needs only the weights and their JSON: no training objects, no pickles.
    """
    p = Path(path).expanduser()
    device = torch.device(device)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        resolve_checkpoint(p)  # raises the pickle refusal
    if p.suffix == ".safetensors":
        return _load_generator_file(p, device)
    ckpt = resolve_checkpoint(p)
    state = read_state(ckpt)
    cfg = TrainConfig.from_dict(state["config"])
    weights = ckpt / MODEL_FILE
    prefix = "G_ema" if use_ema else "G"
    tensors = _read_prefix(weights, (prefix, "G"))
    return _build(cfg.model, tensors, str(ckpt), device, {"step": state.get("step"), "preset": cfg.preset})


def _read_prefix(path: Path, prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            for prefix in prefixes:
                sel = [k for k in keys if k.startswith(prefix + ".")]
                if sel:
                    return {k[len(prefix) + 1 :]: f.get_tensor(k) for k in sel}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({e})") from None
    raise CheckpointError(f"{path} holds no generator weights (looked for {', '.join(prefixes)})")


def _build(model: ModelConfig, tensors: dict[str, Tensor], source: str, device: torch.device, meta: dict):
    from ganime.checkpoint import load_module

    G = build_generator(model)
    load_module(G, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, f"generator {source}")
    G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(G, model, source, device, meta)


def _load_generator_file(path: Path, device: torch.device) -> LoadedGenerator:
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
        model = TrainConfig.from_dict({"model": meta["model"]}).model
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar} is missing: a generator file needs its JSON sidecar") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{sidecar} is not a ganime generator description ({e})") from None
    tensors = _read_prefix(path, ("G",))
    return _build(model, tensors, str(path), device, meta)


def save_generator(gen: LoadedGenerator, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write G alone as `out`.safetensors (+ `out`.json): a small file to share or ship."""
    from ganime.checkpoint import _save_tensors, atomic_write_json, flatten_state_dicts

    out = Path(out).with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in gen.G.state_dict().items()}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    _save_tensors(tmp, flatten_state_dicts(G=sd))
    os.replace(tmp, out)
    meta = {
        "model": gen.model.__dict__ | {},
        "value_range": [-1, 1],
        "ganime_version": __version__,
        "source": gen.source,
        **{k: v for k, v in gen.meta.items() if k not in ("model",)},
    }
    atomic_write_json(out.with_suffix(".json"), json.loads(json.dumps(meta, default=list)))
    return out


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 NHWC images into one uint8 HWC image (nrow images per row)."""
    n, h, w, c = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y : y + h, x : x + w] = img
    return grid


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 HWC (C = 1 or 3) array as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image[..., 0] if image.shape[-1] == 1 else image
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    Image.fromarray(arr).save(tmp)
    os.replace(tmp, path)
    return path


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latents a and b at fractions t (White 2016), the usual GAN walk."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(gen: LoadedGenerator, seed_a: int, seed_b: int, frames: int, truncation: float = 1.0) -> np.ndarray:
    """uint8 frames of a spherical latent walk from seed_a to seed_b (both ends included)."""
    if frames < 2:
        raise ConfigError("an interpolation needs at least 2 frames")
    za, zb = gen.latents([seed_a, seed_b])
    z = slerp(za, zb, torch.linspace(0, 1, frames))
    return gen.images(z, truncation=truncation)


def write_video(frames: list[np.ndarray] | np.ndarray, out: str | Path, fps: int = 12, scale: int = 1) -> Path:
    """Write frames (uint8 HWC) to .mp4 (imageio-ffmpeg, H.264) or .gif, by the file suffix."""
    import imageio.v2 as imageio

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f) for f in frames]
    if scale > 1:
        frames = [np.kron(f, np.ones((scale, scale, 1), np.uint8)) for f in frames]
    # H.264 wants even sizes: pad with the border colour
    if out.suffix.lower() == ".mp4":
        h, w = frames[0].shape[:2]
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            frames = [np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge") for f in frames]
    frames = [f if f.shape[-1] == 3 else np.repeat(f, 3, axis=-1) for f in frames]
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}{out.suffix}")
    if out.suffix.lower() == ".gif":
        imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
    elif out.suffix.lower() == ".mp4":
        imageio.mimsave(tmp, frames, fps=fps, codec="libx264", quality=8, macro_block_size=16)
    else:
        raise ConfigError(f"unknown video format {out.suffix!r}; use .mp4 or .gif")
    os.replace(tmp, out)
    return out


def run_video(run_dir: str | Path, out: str | Path | None = None, fps: int = 4) -> list[Path]:
    """Turn a run's samples/epoch_*.png grids into a timelapse MP4 and GIF."""
    run_dir = Path(run_dir)
    grids = sorted((run_dir / "samples").glob("*.png"))
    if not grids:
        raise ConfigError(f"{run_dir} has no sample grids in samples/; train first")
    frames = [np.asarray(Image.open(g).convert("RGB")) for g in grids]
    shape = frames[0].shape
    frames = [f for f in frames if f.shape == shape]
    base = Path(out) if out else run_dir / "timelapse"
    base = base.with_suffix("")
    return [write_video(frames, base.with_suffix(".mp4"), fps), write_video(frames, base.with_suffix(".gif"), fps)]
