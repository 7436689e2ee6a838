"""The image API: one face, a grid, a latent walk. Same query, same bytes (ETag; a 304 costs no generator)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ganime.errors import ConfigError
from ganime.generate import LoadedGenerator, slerp
from ganime.io import make_grid
from ganime.latent import decode_latent, format_edits, parse_edit_text
from ganime.web import served as limits
from ganime.web.encode import encode_gif, encode_png
from ganime.web.served import MAX_FRAMES, MAX_GIF_SIZE, MAX_GRID, MAX_SEED, MAX_SIZE, Served, limits_error, served

# A seeded image is fixed for one model and ganime version, but the same URL can serve another model after
# a restart: caches keep it, yet revalidate each time (a 304 by ETag costs no generator work).
CACHE_SEEDED = "public, no-cache"
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}
GIF = {200: {"content": {"image/gif": {}}, "description": "an animated GIF"}}

MAX_Z = 64.0  # |z_i| a latent in a URL may hold, as the page (web/static/latent.js); a standard normal never comes near

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"0..{MAX_SEED}")]
Truncation = Annotated[float, Query(gt=0, le=1, description="psi in (0, 1]: lower = safer, less varied")]

router = APIRouter(tags=["images"])


def face_edits(gen: LoadedGenerator, text: str | None) -> dict[str, float]:
    """A request's edits in the permalink form (`name:amount,...`, ganime.latent.parse_edit_text), checked
    against the generator's directions (read only when there are edits)."""
    return parse_edit_text(text, gen.directions.names) if text else {}


def face_latent(text: str, z_dim: int) -> np.ndarray:
    """A request's latent `z` (ganime.latent.decode_latent: base64url float32) within +-MAX_Z."""
    z = decode_latent(text, z_dim)
    if np.abs(z).max() > MAX_Z:
        raise ConfigError(f"z must hold values within -{MAX_Z:g}..{MAX_Z:g}")
    return z


def image_response(data: bytes, media: str, etag: str | None, name: str) -> Response:
    headers = {"Content-Disposition": f'inline; filename="{name}"'}
    if etag is None:
        headers["Cache-Control"] = "no-store"
    else:
        headers |= {"ETag": etag, "Cache-Control": CACHE_SEEDED}
    return Response(data, media_type=media, headers=headers)


def not_modified(request: Request, etag: str, cache: str = CACHE_SEEDED) -> Response | None:
    # RFC 9110 13.1.2: a list of tags, weak ones (W/"...") match too, "*" matches any
    header = request.headers.get("if-none-match")
    if header is None:
        return None
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    return None


def cost_check(s: Served, request: Request, pixels: int, what: str) -> Response | None:
    """422 over the per-request cap; else charge the client's rate budget for the pixels (429 if spent)."""
    cap = limits.MAX_PIXELS  # read per call: tests shrink it
    if pixels > cap:
        return limits_error(422, f"{what} is {pixels} pixels; at most {cap} per request")
    s.charge(request, pixels / 65536)
    return None


@router.get("/api/face.png", response_class=Response, responses=PNG)
async def api_face(
    request: Request,
    s: Annotated[Served, Depends(served)],
    seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="omit for a random face")] = None,
    truncation: Truncation = 1.0,
    size: Annotated[int | None, Query(ge=8, le=MAX_SIZE, description="width = height in pixels")] = None,
    edits: Annotated[
        str | None, Query(max_length=1024, description="directions to add to z, e.g. hair-red:1.5,sefa-0:-2")
    ] = None,
    z: Annotated[
        str | None, Query(max_length=8192, description="a latent instead of a seed: base64url float32 (search by picture)")
    ] = None,
) -> Response:
    """One face. The same seed (or z), edits, truncation and size give the same PNG bytes."""
    if z is not None and seed is not None:
        return limits_error(422, "give a seed or a latent z, not both")
    changes = face_edits(s.gen, edits)
    etag = None
    if z is not None:
        base = torch.from_numpy(face_latent(z, s.gen.z_dim))[None]
        digest = hashlib.sha256(base.numpy().tobytes()).hexdigest()[:16]
        etag = f'"{s.tag_base}-z{digest}-{format_edits(changes)}-{truncation!r}-{size or s.gen.resolution}"'
    elif seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    else:
        etag = f'"{s.tag_base}-{seed}-{format_edits(changes)}-{truncation!r}-{size or s.gen.resolution}"'
    if etag is not None and (cached := not_modified(request, etag)):
        return cached
    if refused := cost_check(s, request, (size or s.gen.resolution) ** 2, "the face"):
        return refused
    if z is None and not changes:
        data = await s.face_png(seed, truncation, size)
    else:
        latent, labels = (base, None) if z is not None else s.latents([seed])
        if changes:
            latent = s.gen.directions.apply(latent, changes)
        nc = s.gen.model.num_classes
        if nc and labels is None:
            labels = torch.zeros(1, dtype=torch.long)
        data = await s.batcher.submit(latent, labels, lambda imgs: encode_png(imgs[0], size), truncation)
    name = f"ganime-seed{seed}.png" if z is None else "ganime-face.png"
    response = image_response(data, "image/png", etag, name)
    if seed is not None:
        response.headers["X-Seed"] = str(seed)
    return response


@router.get("/api/grid.png", response_class=Response, responses=PNG)
async def api_grid(
    request: Request,
    s: Annotated[Served, Depends(served)],
    n: Annotated[int, Query(ge=1, le=MAX_GRID)] = 16,
    seed: Seed = 0,
    truncation: Truncation = 1.0,
) -> Response:
    """A grid of n faces for seeds seed, seed+1, ..., seed+n-1."""
    if seed + n - 1 > MAX_SEED:
        return limits_error(422, f"seed + n - 1 must be <= {MAX_SEED}")
    etag = f'"{s.tag_base}-grid-{n}-{seed}-{truncation!r}"'
    if cached := not_modified(request, etag):
        return cached
    if refused := cost_check(s, request, n * s.gen.resolution**2, f"a grid of {n}"):
        return refused
    z, labels = s.latents(list(range(seed, seed + n)))
    data = await s.batcher.submit(z, labels, lambda imgs: encode_png(make_grid(imgs)), truncation)
    return image_response(data, "image/png", etag, f"ganime-grid{seed}-{n}.png")


@router.get("/api/interpolate.gif", response_class=Response, responses=GIF)
async def api_interpolate(
    request: Request,
    s: Annotated[Served, Depends(served)],
    a: Seed,
    b: Seed,
    frames: Annotated[int, Query(ge=2, le=MAX_FRAMES)] = 24,
    truncation: Truncation = 1.0,
    size: Annotated[int | None, Query(ge=8, le=MAX_GIF_SIZE)] = None,
    fps: Annotated[int, Query(ge=1, le=50)] = 12,
) -> Response:
    """An animated spherical walk in latent space from seed a to seed b (both ends included), looping."""
    side = size or s.gen.resolution
    etag = f'"{s.tag_base}-walk-{a}-{b}-{frames}-{truncation!r}-{side}-{fps}"'
    if cached := not_modified(request, etag):
        return cached
    if refused := cost_check(s, request, frames * side**2, f"{frames} frames of {side} px"):
        return refused
    za, zb = s.gen.latents([a, b])
    z = slerp(za, zb, torch.linspace(0, 1, frames))  # as generate.interpolate
    nc = s.gen.model.num_classes
    labels = torch.full((frames,), a % nc) if nc else None
    data = await s.batcher.submit(z, labels, lambda imgs: encode_gif(imgs, size, fps), truncation)
    return image_response(data, "image/gif", etag, f"ganime-walk{a}-{b}.gif")
