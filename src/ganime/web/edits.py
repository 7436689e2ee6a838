"""The edit routes: `/api/directions` (what the sliders move) and `POST /api/invert` (search by picture).

A face's edits travel as the `edits` query parameter of /api/face.png (web/images.py) in the permalink's form,
`name:amount,...`; an inverted face as `z`, base64url of its float32 latent (web/edit_space.py).
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from ganime.web.edit_space import Directions, encode_latent, load_directions, search
from ganime.web.encode import encode_png
from ganime.web.images import cost_check
from ganime.web.served import Served, limits_error, served

PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_PICTURE_SIDE = 4096  # pixels per side of an uploaded picture (a decompression bomb stops here)
INVERT_SECONDS = 4.0  # the optimiser's budget per picture on the server
INVERT_CANDIDATES = 64  # seeds tried before optimising

router = APIRouter(tags=["edits"])


def served_directions(s: Served) -> Directions | None:
    """The served generator's directions (read from beside its weights; small files, read per request)."""
    return load_directions(s.gen)


@router.get("/api/directions")
def api_directions(s: Annotated[Served, Depends(served)]) -> dict[str, Any]:
    """The generator's directions in z (name, label, group colours/details/shape, step, range); an empty list
    where it has none. A face takes them as /api/face.png?edits=name:amount,name:amount."""
    d = served_directions(s)
    return {"z_dim": s.gen.z_dim, "directions": list(d.entries) if d is not None else []}


@router.post("/api/invert")
async def api_invert(request: Request, s: Annotated[Served, Depends(served)]) -> Any:
    """Search by picture: the body is one PNG, JPEG, WebP or GIF (Content-Type image/*, at most
    limits.body_bytes); the answer is the latent of the nearest face (`z`, base64url float32), the face as a
    data: URL, its mean squared error and the permalink fragment that shows it."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in PICTURE_TYPES:
        return limits_error(415, f"send the picture itself as the body, Content-Type one of {', '.join(PICTURE_TYPES)}")
    body = await request.body()
    try:
        with Image.open(io.BytesIO(body)) as im:
            if max(im.size) > MAX_PICTURE_SIDE:
                return limits_error(422, f"the picture is {im.width}x{im.height}; at most {MAX_PICTURE_SIDE} per side")
            picture = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return limits_error(422, "the body is not a picture this server can read (PNG, JPEG, WebP, GIF)")
    side = s.gen.resolution
    # charged as the faces it draws: the candidates, then about as many optimiser steps
    if refused := cost_check(s, request, 2 * INVERT_CANDIDATES * side * side, "searching by picture"):
        return refused
    found = await run_in_threadpool(search, s.gen, picture, INVERT_SECONDS, INVERT_CANDIDATES)
    z = encode_latent(found.z)
    return {
        "z": z,
        "loss": round(found.loss, 6),
        "start_seed": found.seed,
        "image": "data:image/png;base64," + base64.b64encode(encode_png(found.image)).decode(),
        "permalink": f"/#z={z}&t=1",
    }
