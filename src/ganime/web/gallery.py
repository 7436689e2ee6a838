"""The gallery API: save a face (regenerated from its seed or latent, with its edits), list and filter by tag,
fetch, delete. Each item carries its edits and latent, so its permalink shows the face that was saved."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ganime.latent import encode_latent, format_edits
from ganime.web.encode import encode_png
from ganime.web.images import PNG, face_edits, face_latent, not_modified
from ganime.web.served import MAX_SEED, Served, served
from ganime.web.store import MAX_LIST, MAX_TAG_LEN, MAX_TAGS, GalleryItem, check_id, normalize_tag, normalize_tags

ItemId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="16 hex digits")]
# a saved image never changes, but it can be deleted: caches keep it and ask again each time (ETag)
CACHE_SAVED = "public, no-cache"

router = APIRouter(tags=["gallery"])


class SaveRequest(BaseModel):
    """POST /api/gallery body: the face to save is regenerated from its seed on the server."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True)  # strict: no true/false, "12" or 1.5
    truncation: float = Field(1.0, gt=0, le=1, strict=True)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    edits: str | None = Field(None, max_length=1024)  # the permalink's e=: name:amount,...
    z: str | None = Field(None, max_length=8192)  # an inverted face's latent (base64url float32); seed = its start


def json_only(request: Request) -> None:
    """415 for a body that is not declared JSON (it would otherwise read as 'not an object')."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(415, "send a JSON object with Content-Type: application/json")


def js_number(x: float) -> str:
    """`x` as JavaScript's String(x) writes it (the page's permalinks): 3.0 -> "3", 1e-05 -> "0.00001";
    the same shortest digits as Python's repr."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else repr(x)
    _, digits, exp = Decimal(repr(abs(x))).normalize().as_tuple()
    text, k = "".join(map(str, digits)), len(digits)
    n = exp + k  # where the decimal point goes
    if k <= n <= 21:
        out = text + "0" * (n - k)
    elif 0 < n <= 21:
        out = f"{text[:n]}.{text[n:]}"
    elif -6 < n <= 0:
        out = "0." + "0" * -n + text
    else:
        out = text[0] + (f".{text[1:]}" if k > 1 else "") + f"e{'+' if n > 0 else '-'}{abs(n - 1)}"
    return ("-" if x < 0 else "") + out


def _js_edits(edits: str) -> str:
    """Stored edits (format_edits: Python's repr) with their amounts as the page writes them."""
    parts = []
    for part in edits.split(","):
        name, _, amount = part.partition(":")
        try:
            parts.append(f"{name}:{js_number(float(amount))}")
        except ValueError:  # not written by format_edits: passed on as stored, the page says what is wrong
            parts.append(part)
    return ",".join(parts)


def permalink(seed: int, truncation: float, edits: str = "", z: str = "") -> str:
    """The page's one permalink form, as web/static/app.js writes it (`fragment`): #seed=7&t=0.7&e=name:1.5,...
    or, for a face found by picture, #z=<base64url>&t=...&e=...; no t for truncation 1, numbers as JS writes them."""
    face = f"z={z}" if z else f"seed={seed}"
    t = "" if truncation == 1.0 else f"&t={js_number(truncation)}"
    return f"/#{face}{t}" + (f"&e={_js_edits(edits)}" if edits else "")


def item_json(item: GalleryItem) -> dict[str, Any]:
    """An item as the API answers it: its record (edits and z "" for none), image URL and permalink."""
    return {
        **item.to_dict(),
        "image_url": f"/api/gallery/{item.id}/image.png",
        "permalink": permalink(item.seed, item.truncation, item.edits, item.z),
    }


@router.post("/api/gallery", status_code=201, dependencies=[Depends(json_only)])
async def gallery_add(body: Annotated[SaveRequest, Body()], s: Annotated[Served, Depends(served)]) -> JSONResponse:
    """Save a face (regenerated here from seed and truncation) with tags."""
    tags = normalize_tags(body.tags)  # before generating: bad tags cost no generator time
    quota = s.policy.max_items
    if quota and await run_in_threadpool(s.store.count) >= quota:  # early: a full gallery costs no rendering
        raise HTTPException(507, f"the gallery is full ({quota} faces); delete some first")
    changes = face_edits(s.gen, body.edits)  # checked before any work, as the tags
    edits = format_edits(changes)
    latent = face_latent(body.z, s.gen.z_dim) if body.z is not None else None  # checked before any work too
    if latent is None and not edits:
        png = await s.face_png(body.seed, body.truncation, None)
    else:
        z = torch.from_numpy(latent[None]) if latent is not None else s.latents([body.seed])[0]
        if changes:
            z = s.gen.directions.apply(z, changes)
        nc = s.gen.model.num_classes
        labels = (torch.zeros(1, dtype=torch.long) if body.z is not None else torch.tensor([body.seed % nc])) if nc else None
        png = await s.batcher.submit(z, labels, lambda imgs: encode_png(imgs[0]), body.truncation)
    z_text = encode_latent(latent) if latent is not None else ""  # as /api/invert writes it
    item = await run_in_threadpool(  # the store counts and inserts in one write (GalleryFullError: 507)
        lambda: s.store.add(
            model_id=s.model_id, seed=body.seed, truncation=body.truncation, png=png, tags=tags, max_items=quota,
            edits=edits, z=z_text,
        )
    )
    return JSONResponse(item_json(item), status_code=201, headers={"Location": f"/api/gallery/{item.id}"})


@router.get("/api/gallery")
def gallery_list(
    response: Response,
    s: Annotated[Served, Depends(served)],
    tag: Annotated[str | None, Query(max_length=MAX_TAG_LEN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """Saved faces, newest first; `tag` keeps those carrying that tag (echoed as stored: lower case, NFKC)."""
    tag = normalize_tag(tag) if tag else None
    response.headers["Cache-Control"] = "no-store"  # changes with every save and delete
    items = s.store.list(tag, limit, offset)
    return {"items": [item_json(i) for i in items], "total": s.store.count(tag), "tag": tag, "offset": offset}


@router.get("/api/tags")
def gallery_tags(response: Response, s: Annotated[Served, Depends(served)]) -> dict[str, int]:
    """Every tag in use, with how many faces carry it, most used first."""
    response.headers["Cache-Control"] = "no-store"
    return s.store.tags()


@router.get("/api/gallery/{item_id}")
def gallery_get(item_id: ItemId, response: Response, s: Annotated[Served, Depends(served)]) -> dict[str, Any]:
    """One saved face's record."""
    response.headers["Cache-Control"] = "no-store"
    item = s.store.get(check_id(item_id))
    if item is None:
        raise HTTPException(404, f"no gallery item {item_id}")
    return item_json(item)


@router.get("/api/gallery/{item_id}/image.png", response_class=Response, responses=PNG)
def gallery_image(item_id: ItemId, request: Request, s: Annotated[Served, Depends(served)]) -> Response:
    """A saved face's PNG, as it was saved."""
    etag = f'"{item_id}"'  # ids are never reused: an id names one image for good
    data = s.store.image(check_id(item_id))
    if data is None:
        raise HTTPException(404, f"no gallery item {item_id}")
    if cached := not_modified(request, etag, CACHE_SAVED):
        return cached
    return Response(data, media_type="image/png", headers={"Cache-Control": CACHE_SAVED, "ETag": etag})


@router.delete("/api/gallery/{item_id}", status_code=204)
def gallery_delete(item_id: ItemId, s: Annotated[Served, Depends(served)]) -> Response:
    """Remove a saved face."""
    if not s.store.delete(check_id(item_id)):
        raise HTTPException(404, f"no gallery item {item_id}")
    return Response(status_code=204)
