"""The edit routes: `/api/directions` (what the sliders move) and `POST /api/invert` (search by picture).

A face's edits travel as the `edits` query parameter of /api/face.png (web/images.py) in the permalink's form,
`name:amount,...` (ganime.latent.parse_edit_text); an inverted face as `z`, base64url of its float32 latent
(ganime.latent.encode_latent). The directions are the generator's (ganime.directions, read beside its weights),
the search is ganime.invert's.
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from ganime.invert import fit_picture, invert
from ganime.latent import encode_latent
from ganime.web.encode import encode_png
from ganime.web.images import cost_check
from ganime.web.served import Served, limits_error, served

PICTURE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_PICTURE_SIDE = 4096  # pixels per side of an uploaded picture (a decompression bomb stops here)
INVERT_SECONDS = 4.0  # the optimiser's budget per picture on the server
INVERT_CANDIDATES = 64  # seeds tried before optimising
INVERT_THREADS = 1  # torch threads per search: on a machine busy with other work, 2 threads were 8-15x slower than 1

router = APIRouter(tags=["edits"])


def pixel_error(face: np.ndarray, picture: np.ndarray) -> float:
    """Mean squared error in [0, 1] units between a face and the picture's centred square at the face's size."""
    target = fit_picture(picture, face.shape[0]).astype(np.float32) / 127.5 - 1
    return float(((face.astype(np.float32) / 127.5 - 1 - target) ** 2).mean()) / 4


@router.get("/api/directions")
def api_directions(s: Annotated[Served, Depends(served)]) -> dict[str, Any]:
    """The generator's directions in z (name, label, group colours/details/shape, step, range); an empty list
    where it has none. A face takes them as /api/face.png?edits=name:amount,name:amount."""
    return {"z_dim": s.gen.z_dim, "directions": [d.to_dict() for d in s.gen.directions.entries]}


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
    found = await run_in_threadpool(
        lambda: invert(s.gen, picture, seeds=INVERT_CANDIDATES, time_budget_s=INVERT_SECONDS, threads=INVERT_THREADS)
    )
    z = encode_latent(found.z.numpy())
    return {
        "z": z,
        "loss": round(pixel_error(found.image, picture), 6),
        "start_seed": found.seed,
        "image": "data:image/png;base64," + base64.b64encode(encode_png(found.image)).decode(),
        "permalink": f"/#z={z}&t=1",
    }
