"""Use a trained generator: load it from weights + JSON alone, sample, grids, latent walks, videos."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ganime import __version__
from ganime.checkpoint import MODEL_FILE, PICKLE_SUFFIXES, read_checkpoint, read_state, resolve_checkpoint
from ganime.config import ModelConfig, TrainConfig
from ganime.data.dataset import LEGACY_EMPTY_PATH
from ganime.directions import Directions, find_directions
from ganime.errors import CheckpointError, ConfigError, GanimeError
from ganime.io import atomic_path, atomic_write_json
from ganime.latent import (
    MAX_SEED,  # noqa: F401 - still ganime.generate.MAX_SEED for callers
    PORTABLE,
    SCHEMES,
    check_seeds,
    portable_latents,
)
from ganime.models import build_generator

log = logging.getLogger(__name__)

TRUNCATION_SAMPLES, TRUNCATION_SEED = 4096, 12345  # latents averaged for the truncation mean
PRETRAINED = "pretrained"  # the source name of the generator shipped with ganime
PRETRAINED_FILE = "modern-faces-128.safetensors"  # in ganime/assets/, with its .json model card; docs/pretrained.md
# page titles for runs trained on the built-in sets; other data gets the generic one and is named below it
BUILTIN_TITLES = {"faces": "This face does not exist", "emoji": "This emoji does not exist"}


def pretrained_path() -> Path:
    """The shipped `modern` generator trained on the shipped faces set (the default for generate/serve)."""
    return Path(__file__).resolve().parent / "assets" / PRETRAINED_FILE


def default_generator_path() -> Path | None:
    """What `ganime generate` and `ganime serve` use when given no source: the shipped generator, if present."""
    path = pretrained_path()
    return path if path.exists() and path.with_suffix(".json").exists() else None


@dataclass
class LoadedGenerator:
    """A generator in eval mode with what is needed to sample from it."""

    G: nn.Module
    model: ModelConfig
    source: str
    device: torch.device
    meta: dict
    _stem_mean: Tensor | None = field(default=None, repr=False)  # for truncation; see `stem_mean`
    _directions: Directions | None = field(default=None, repr=False)  # read once; see `directions`

    @property
    def z_dim(self) -> int:
        return self.model.z_dim

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def classes(self) -> list[str]:
        """Class names by label index (a glyph model's characters); [] when unconditional or not recorded."""
        return [str(c) for c in self.meta.get("classes") or []]

    def labels_for(self, names: list[str]) -> Tensor:
        """Label indices (int64) for class names, e.g. characters; unknown names are a user error."""
        if not self.model.num_classes:
            raise ConfigError("this generator is not class-conditional: it takes no --class")
        if not self.classes:
            raise ConfigError("this generator does not record its class names (trained before they were saved)")
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [n for n in names if n not in index]
        if unknown:
            shown = "".join(self.classes) if all(len(c) == 1 for c in self.classes) else ", ".join(self.classes)
            raise ConfigError(f"unknown class {unknown[0]!r}; this generator knows: {shown}")
        return torch.tensor([index[n] for n in names], dtype=torch.int64)

    @property
    def feature_truncation(self) -> bool:
        """True when truncation pulls G's first feature map toward its mean (`stem_mean`, computed once);
        False when it scales z (models without `stem`/`synthesis`). See `truncate`."""
        return hasattr(self.G, "stem") and hasattr(self.G, "synthesis")

    @property
    def latent_scheme(self) -> str:
        """How seeds map to latents (ganime.latent): PORTABLE for new runs, TORCH for generators saved before."""
        return self.model.latents

    def latents(self, seeds: list[int]) -> Tensor:
        """One latent per seed, by the generator's latent scheme (device-independent, float32 on the CPU).

        PORTABLE: ganime.latent.portable_latents, the same in onnxruntime and the browser. TORCH (generators
        saved before schemes were recorded): z = torch.randn(z_dim) from a CPU generator seeded with the seed.
        """
        seeds = check_seeds(seeds)
        if self.latent_scheme == PORTABLE:
            return torch.from_numpy(portable_latents(seeds, self.z_dim))
        zs = [torch.randn(self.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(zs) if zs else torch.zeros(0, self.z_dim)

    @property
    def directions(self) -> Directions:
        """The edit directions stored beside the weights (ganime.directions; empty when there are none)."""
        if self._directions is None:
            found = find_directions(self.source)
            if found is not None and found.z_dim != self.z_dim:
                raise CheckpointError(f"the directions beside {self.source} have z_dim {found.z_dim}, G {self.z_dim}")
            self._directions = found if found is not None else Directions((), torch.zeros(0, self.z_dim))
        return self._directions

    def edited_latents(self, seeds: list[int], edits: dict[str, float] | None = None) -> Tensor:
        """The seeds' latents moved by the edits ({direction name: amount}, see `directions`), before truncation."""
        z = self.latents(seeds)
        return self.directions.apply(z, edits) if edits else z

    @torch.no_grad()
    def images(self, z: Tensor, labels: Tensor | None = None, truncation: float = 1.0) -> np.ndarray:
        """Latents (N, z_dim) -> uint8 images (N, H, W, C); truncation psi in (0, 1], see `truncate`."""
        if self.model.num_classes and labels is None:
            raise ConfigError("this generator is class-conditional; pass labels")
        out = []
        for i in range(0, len(z), 256):
            zi = z[i : i + 256].to(self.device, torch.float32)
            li = labels[i : i + 256].to(self.device) if labels is not None else None
            out.append(to_uint8(self.truncate(zi, li, truncation)))
        return np.concatenate(out) if out else np.zeros((0, self.resolution, self.resolution, 3), np.uint8)

    @torch.no_grad()
    def truncate(self, z: Tensor, labels: Tensor | None = None, psi: float = 1.0) -> Tensor:
        """G's images for latents z (on G's device) with the truncation trick at `psi` (1 = off).

        StyleGAN's form (Karras et al. 2019, sec. 5.1): h = mean + psi * (h - mean), in the space of G's first
        feature map (`G.stem`, the 4x4 map every later layer and skip connection reads), with `mean` its
        average over TRUNCATION_SAMPLES fixed latents: psi -> 0 gives the average image, and each image keeps
        its direction from the mean. DCGAN and FastGAN have no mapping network, so this 4x4 map plays the
        role of StyleGAN's w. Models without `stem`/`synthesis` scale z toward the origin instead (BigGAN's
        trick, Brock et al. 2019, in its simplest form), as the torch-free ONNX path always does.
        """
        if psi == 1.0:
            return self.G(z, labels) if labels is not None else self.G(z)
        if not self.feature_truncation:
            z = z * psi
            return self.G(z, labels) if labels is not None else self.G(z)
        mean = self.stem_mean()
        return self.G.synthesis(torch.lerp(mean, self.G.stem(z, labels), psi))

    @torch.no_grad()
    def stem_mean(self) -> Tensor:
        """Average of `G.stem` over fixed latents (labels cycling through the classes); computed once."""
        if self._stem_mean is None:
            g = torch.Generator().manual_seed(TRUNCATION_SEED)
            total = None
            for i in range(0, TRUNCATION_SAMPLES, 512):
                z = torch.randn(512, self.z_dim, generator=g).to(self.device)
                labels = (torch.arange(i, i + 512) % self.model.num_classes).to(self.device) if self.model.num_classes else None
                h = self.G.stem(z, labels).float().sum(dim=0, keepdim=True)
                total = h if total is None else total + h
            self._stem_mean = total / TRUNCATION_SAMPLES
        return self._stem_mean

    def from_seeds(self, seeds: list[int], truncation: float = 1.0, labels: Tensor | None = None) -> np.ndarray:
        """uint8 images for a list of seeds: the same seed gives the same image."""
        return self.images(self.latents(seeds), labels, truncation)


def page_card(gen: LoadedGenerator) -> dict[str, str]:
    """Title and subtitle for a page showing this generator: the model card's own (a shipped or built
    generator's sidecar `card`), else made from the data it was trained on, never a claim about other data."""
    card = gen.meta.get("card") if isinstance(gen.meta.get("card"), dict) else {}
    if card.get("title"):
        return {"title": str(card["title"]), "subtitle": str(card.get("subtitle", ""))}
    data = gen.meta.get("data")
    data = data.get("path", "") if isinstance(data, dict) else data
    preset = gen.meta.get("preset") or "ganime"
    if not isinstance(data, str):
        return {"title": "This image does not exist", "subtitle": f"drawn by a {preset} GAN trained with ganime"}
    name = data or LEGACY_EMPTY_PATH  # runs made before the faces set stored "" for the emoji set
    title = BUILTIN_TITLES.get(name, "This image does not exist")
    shown = f"ganime's built-in {name} set" if name in BUILTIN_TITLES else Path(name).name or name
    return {"title": title, "subtitle": f"drawn by a {preset} GAN trained on {shown}"}


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] NCHW float -> uint8 NHWC (round half up, as torchvision's save_image)."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def load_generator(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedGenerator:
    """Load G (its EMA copy when there is one) from a run dir, a ckpt-* dir, a .safetensors generator file,
    or "pretrained" (the generator shipped with ganime, `pretrained_path()`).

    Needs only the weights and their JSON: no training objects, no pickles.
    """
    p = Path(path).expanduser()
    if str(path) == PRETRAINED and not p.exists():  # a local file or run named "pretrained" wins
        p = default_generator_path()
        if p is None:
            raise CheckpointError(f"the pretrained generator {pretrained_path()} is missing from this install")
    device = torch.device(device)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        resolve_checkpoint(p)  # raises the pickle refusal
    if p.suffix == ".safetensors":
        return _load_generator_file(p, device)
    def read(ckpt: Path) -> LoadedGenerator:
        state = read_state(ckpt)
        cfg = TrainConfig.from_dict(state["config"])
        tensors = _read_prefix(ckpt / MODEL_FILE, ("G_ema" if use_ema else "G", "G"))
        meta = {
            "step": state.get("step"), "preset": cfg.preset, "classes": state.get("classes", []),
            "data": cfg.data.path,
        }
        return _build(cfg.model, tensors, str(ckpt), device, meta)

    return read_checkpoint(p, read)  # a run being trained: its newest complete checkpoint, without waiting


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

    if model.latents not in SCHEMES:
        raise CheckpointError(f"{source}: unknown latent scheme {model.latents!r}; this ganime knows {', '.join(SCHEMES)}")
    _check_shapes(model, tensors, source)
    G = build_generator(model)
    load_module(G, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, f"generator {source}")
    G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(G, model, source, device, meta)


def _check_shapes(model: ModelConfig, tensors: dict[str, Tensor], source: str) -> None:
    """Build G on the meta device (no memory) and compare with the file, so a tampered or mismatched JSON
    gives a clear error instead of a huge allocation or a crash."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_generator(model).state_dict().items()}
    except GanimeError:  # unknown architecture
        raise
    except Exception as e:  # noqa: BLE001 - negative sizes, wrong types, ...: all mean a bad model config
        raise CheckpointError(f"{source}: its model config cannot be built ({type(e).__name__}: {e})"[:400]) from None
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = [f"{k} {got[k]} != {expected[k]}" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
    if missing or extra or wrong:
        what = "; ".join(
            x for x in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"wrong shape {', '.join(wrong[:3])}" if wrong else "",
            ) if x
        )
        raise CheckpointError(f"generator {source} does not match its model config ({what})")


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
    from ganime.checkpoint import flatten_state_dicts, save_tensors

    out = Path(out).with_suffix(".safetensors")
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in gen.G.state_dict().items()}
    with atomic_path(out, fsync=False) as tmp:  # save_tensors fsyncs
        save_tensors(tmp, flatten_state_dicts(G=sd))
    meta = {
        "model": gen.model.__dict__ | {},
        "value_range": [-1, 1],
        "ganime_version": __version__,
        "source": gen.source,
        **{k: v for k, v in gen.meta.items() if k not in ("model",)},
    }
    atomic_write_json(out.with_suffix(".json"), json.loads(json.dumps(meta, default=list)))
    return out


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
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise ConfigError(f"unknown video format {out.suffix!r}; use .mp4 or .gif")
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".gif":
            imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(tmp, frames, fps=fps, codec="libx264", quality=8, macro_block_size=16)
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
