"""Search by picture: the latent whose face is nearest to a given picture (GAN inversion by optimisation).

Two stages, as image2stylegan-style projectors do (Abdal et al. 2019; StyleGAN2's projector, Karras et al. 2020):

1. start: draw many seeds' faces and keep the few nearest to the picture (a batched search, no gradients);
2. refine: Adam on those latents, minimising a pixel loss at low resolution (L2 + L1 on 32 px versions, where the
   picture's layout and colours live) plus a feature loss in the project's own faces attribute classifier
   (ganime.metrics.attribute_net: its 16x16 and 8x8 conv maps and its 128-d embedding, nothing downloaded), with
   a penalty keeping |z| near sqrt(z_dim), the shell where N(0, I) latents live, so the result stays a face
   the generator draws well (and edits along the directions still mean what they meant).

The result is at truncation 1; its latent is what a permalink carries (ganime.latent.encode_latent).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ganime.device import torch_threads
from ganime.errors import DataError
from ganime.generate import LoadedGenerator, to_uint8

log = logging.getLogger(__name__)

PIXEL_SIZE = 32  # the pixel loss compares 32 px versions (or the generator's size when smaller)
FEATURE_WEIGHT = 0.5
SHELL_WEIGHT = 0.05
MAX_PICTURE_PIXELS = 40_000_000  # a bigger upload is refused before decoding (decompression bombs)


@dataclass(frozen=True)
class InvertResult:
    """The nearest latent found and its face."""

    z: Tensor  # float32 (z_dim,) on the CPU
    image: np.ndarray  # uint8 (R, R, 3): G's face for z at truncation 1
    loss: float  # the final loss (pixel + feature + shell), lower is closer
    seed: int  # the seed whose latent the search started from
    start_loss: float  # that seed's loss before refining
    steps: int  # Adam steps taken (fewer than asked when time_budget_s ran out)
    seconds: float


def load_picture(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) of an image file (transparency composited on white); a DataError when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"picture {p} does not exist" if not p.exists() else f"picture {p} is not a file")
    try:
        with Image.open(p) as im:
            return picture_array(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read picture {p}: {type(e).__name__}: {e}"[:300]) from None


def picture_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """A picture (PIL image, or uint8 array HxW, HxWx3 or HxWx4) as uint8 (H, W, 3); alpha over white."""
    if isinstance(image, Image.Image):
        if image.width * image.height > MAX_PICTURE_PIXELS:
            raise DataError(f"the picture is {image.width}x{image.height}; at most {MAX_PICTURE_PIXELS:,} pixels")
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise DataError(f"a picture must be uint8 HxW, HxWx3 or HxWx4, got {a.dtype} {a.shape}")
    if min(a.shape[:2]) < 8:
        raise DataError(f"the picture is {a.shape[1]}x{a.shape[0]}; it needs at least 8x8 pixels")
    return picture_array(Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a))


def fit_picture(picture: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (R, R, 3): the picture's centred square, resized to the generator's size (Lanczos)."""
    h, w = picture.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(picture[top : top + s, left : left + s])
    if s != resolution:
        square = square.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8)


class Distance:
    """Loss of generated images (N, 3, R, R) in [-1, 1] against one target picture: per-image values (N,)."""

    def __init__(self, target: np.ndarray, resolution: int, feature_weight: float = FEATURE_WEIGHT) -> None:
        from ganime.metrics.attribute_net import load_classifier

        self.size = min(PIXEL_SIZE, resolution)
        x = torch.from_numpy(np.array(target)).permute(2, 0, 1)[None].float().div(127.5).sub(1)  # (1, 3, R, R)
        self.target_low = self.low(x)
        self.feature_weight = feature_weight
        self.net = load_classifier().net if feature_weight > 0 else None
        self.target_feats = [f.detach() for f in self.features(x)] if self.net is not None else []

    def low(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="area") if x.shape[-1] != self.size else x

    def features(self, x: Tensor) -> list[Tensor]:
        """The classifier's 16x16 and 8x8 maps and embedding of images in [-1, 1] (its input is [0, 1] at 64 px)."""
        from ganime.metrics.attribute_net import RESOLUTION

        x = (x + 1) / 2
        if x.shape[-1] != RESOLUTION:
            mode = "area" if x.shape[-1] > RESOLUTION else "bilinear"
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        h = x - 0.5
        out = []
        for i, layer in enumerate(self.net.trunk):
            h = layer(h)
            if i in (1, 2, 6):  # after the 16x16 block, the 8x8 block, the embedding's ReLU
                out.append(h)
        return out

    def __call__(self, x: Tensor) -> Tensor:
        d = self.low(x) - self.target_low
        loss = (d * d).mean(dim=(1, 2, 3)) + d.abs().mean(dim=(1, 2, 3))
        if self.net is not None:
            for f, t in zip(self.features(x), self.target_feats):
                scale = (t * t).mean() + 1e-6
                loss = loss + self.feature_weight * ((f - t) ** 2).flatten(1).mean(1) / scale / len(self.target_feats)
        return loss


def invert(
    gen: LoadedGenerator,
    image: np.ndarray | Image.Image,
    steps: int = 150,
    seeds: int = 512,
    time_budget_s: float | None = None,
    starts: int = 2,
    lr: float = 0.08,
    feature_weight: float = FEATURE_WEIGHT,
    threads: int = 0,
) -> InvertResult:
    """The latent whose face is nearest to `image`: the best of `seeds` seeds' faces (0..seeds-1), refined by
    `steps` Adam steps on the `starts` best (stopping early when `time_budget_s` is spent).

    Args:
        image: uint8 HxWx3 (or HxWx4, HxW) array or a PIL image; its centred square is compared at G's size.
        threads: torch's CPU threads for this search (0: as set; ganime.device.torch_threads). On a machine busy
            with other work 1 is fastest.
    """
    with torch_threads(threads):
        return _invert(gen, image, steps, seeds, time_budget_s, starts, lr, feature_weight)


def _invert(gen: LoadedGenerator, image: np.ndarray | Image.Image, steps: int, seeds: int, time_budget_s: float | None,
            starts: int, lr: float, feature_weight: float) -> InvertResult:
    if gen.model.num_classes:
        raise DataError("search by picture needs an unconditional generator; this one is class-conditional")
    if seeds < 1 or steps < 0 or starts < 1:
        raise DataError("invert needs seeds >= 1, steps >= 0 and starts >= 1")
    t0 = time.perf_counter()
    target = fit_picture(picture_array(image), gen.resolution)
    dist = Distance(target, gen.resolution, feature_weight)
    z_dim = gen.z_dim

    def shell(z: Tensor) -> Tensor:
        return SHELL_WEIGHT * (z.norm(dim=1) / z_dim**0.5 - 1) ** 2

    # 1. the nearest seeds
    candidates = gen.latents(list(range(seeds)))
    scores = []
    with torch.no_grad():
        for i in range(0, seeds, 64):
            z = candidates[i : i + 64].to(gen.device)
            scores.append(dist(gen.G(z).float().cpu()) + shell(z.cpu()))
    scores_t = torch.cat(scores)
    order = torch.argsort(scores_t)[: min(starts, seeds)]
    start_seed, start_loss = int(order[0]), float(scores_t[order[0]])

    # 2. refine them together; keep the best latent seen
    z = candidates[order].clone().to(gen.device).requires_grad_(True)
    best_z, best_loss = candidates[order[0]].clone(), start_loss
    opt = torch.optim.Adam([z], lr=lr)
    taken = 0
    with torch.enable_grad():
        for step in range(steps):
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            for group in opt.param_groups:  # cosine ramp-down: large moves first, then settle
                group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / max(1, steps)))
            loss = dist(gen.G(z).float().cpu()) + shell(z.cpu())
            values = loss.detach()
            i = int(values.argmin())
            if float(values[i]) < best_loss:
                best_loss, best_z = float(values[i]), z[i].detach().cpu().clone()
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            taken = step + 1
    with torch.no_grad():  # the last step's move is checked too
        final = dist(gen.G(z).float().cpu()) + shell(z.detach().cpu())
        i = int(final.argmin())
        if float(final[i]) < best_loss:
            best_loss, best_z = float(final[i]), z[i].detach().cpu().clone()
        face = to_uint8(gen.G(best_z[None].to(gen.device)))[0]
    seconds = time.perf_counter() - t0
    log.debug("inverted in %.1f s: loss %.4f -> %.4f (seed %d, %d steps)", seconds, start_loss, best_loss, start_seed, taken)
    return InvertResult(best_z.float(), face, best_loss, start_seed, start_loss, taken, seconds)
