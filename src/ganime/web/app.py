"""The web app: a page that shows a new face on every load, an image API and a tagged gallery.

`create_app` loads the generator once; every image goes through one `MicroBatcher`, so concurrent
requests share generator calls and inference never runs on the event loop. Images depend only on
(model, seed, truncation, size): same query, same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ganime import __version__, generate
from ganime.errors import ConfigError, GanimeError
from ganime.generate import LoadedGenerator, load_generator, make_grid, slerp
from ganime.web.batcher import BusyError, MicroBatcher
from ganime.web.site import BrowserSite
from ganime.web.store import MAX_TAG_LEN, MAX_TAGS, GalleryStore, check_id, normalize_tags, open_store

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_SEED = 2**53 - 1  # the largest integer a browser's JSON/JavaScript number holds exactly
MAX_SIZE = 1024
MAX_GIF_SIZE = 256
MAX_GRID = 64
MAX_FRAMES = 120
MAX_BODY = 16 * 1024
PNG_LEVEL = 1
LIMITS = {
    "seed": [0, MAX_SEED],
    "truncation": "0 < truncation <= 1",
    "size": [8, MAX_SIZE],
    "n": [1, MAX_GRID],
    "frames": [2, MAX_FRAMES],
    "gif_size": [8, MAX_GIF_SIZE],
    "fps": [1, 50],
    "tags_per_item": MAX_TAGS,
    "tag_length": MAX_TAG_LEN,
    "tag_chars": "letters, digits, '_' and '-' (not first)",
    "body_bytes": MAX_BODY,
}
# A seeded image is fixed for one model and ganime version, but the same URL can serve another model after
# a restart: caches keep it, yet revalidate each time (a 304 by ETag costs no generator work).
CACHE_SEEDED = "public, no-cache"
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}
GIF = {200: {"content": {"image/gif": {}}, "description": "an animated GIF"}}

Seed = Annotated[int, Query(ge=0, le=MAX_SEED, description=f"0..{MAX_SEED}")]
Truncation = Annotated[float, Query(gt=0, le=1, description="psi in (0, 1]: lower = safer, less varied")]
ItemId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="16 hex digits")]


class SaveRequest(BaseModel):
    """POST /api/gallery body: the face to save is regenerated from its seed on the server."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True)  # strict: no true/false, "12" or 1.5
    truncation: float = Field(1.0, gt=0, le=1, strict=True)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)


def model_id(gen: LoadedGenerator) -> str:
    """A short hash of the generator's weights: gallery items remember which model made them."""
    h = hashlib.sha256()
    for name, t in sorted(gen.G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def resize(img: np.ndarray, size: int | None) -> Image.Image:
    """uint8 HWC -> PIL image of size x size: nearest for whole multiples (crisp pixels), else Lanczos."""
    im = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    if size is None or size == im.width:
        return im
    return im.resize((size, size), Image.NEAREST if size % im.width == 0 else Image.LANCZOS)


def encode_png(img: np.ndarray, size: int | None = None) -> bytes:
    # zlib level 1: ~3x faster than PIL's default 6 on GAN output for ~20% more bytes (a 64 px face: ~3.6 KB);
    # at 64 px encoding costs as much as the generator itself (docs/benchmarks.md, "Web serving")
    buf = io.BytesIO()
    resize(img, size).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def encode_gif(frames: np.ndarray, size: int | None, fps: int) -> bytes:
    ims = [resize(f, size) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _resolve_generator(generator_path: str | Path | None) -> Path:
    """The given source, or the pretrained generator shipped with ganime (as `ganime generate` does)."""
    if generator_path is not None and (str(generator_path) != generate.PRETRAINED or Path(generator_path).exists()):
        return Path(generator_path)  # a local file or run named "pretrained" wins, as in load_generator
    path = generate.default_generator_path()  # looked up at call time (tests point it elsewhere)
    if path is None or not Path(path).exists():
        raise ConfigError(
            f"no generator given and the pretrained one ({generate.pretrained_path().name}) is not installed: "
            "pass RUN_OR_CHECKPOINT (a run dir from `ganime train`, a ckpt-* dir or a generator .safetensors)"
        )
    return Path(path)


def _json_only(request: Request) -> None:
    """415 for a body that is not declared JSON (it would otherwise read as 'not an object')."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(415, "send a JSON object with Content-Type: application/json")


class _BodyLimit:
    """Reject request bodies over `limit` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, f"request body over {self.limit} bytes", limits=LIMITS)
        try:
            if length is not None and int(length) > self.limit:
                return await too_big(scope, receive, send)
        except ValueError:
            return await _error(400, "bad Content-Length header")(scope, receive, send)
        seen = 0
        over = False

        async def limited_receive() -> dict:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request" and not over:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # the app sees the client leave (so acts on nothing); its answer is replaced by the 413
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await too_big(scope, receive, send)

        await self.app(scope, limited_receive, guarded_send)


def create_app(
    generator_path: str | Path | None = None,
    store: GalleryStore | str | Path | None = None,
    *,
    generator: LoadedGenerator | None = None,
    device: str | torch.device = "cpu",
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    workers: int = 1,
) -> FastAPI:
    """The FastAPI app for a generator (run dir, ckpt-* dir, .safetensors; None = the shipped one).

    Args:
        store: a GalleryStore, a .sqlite path, a directory, a mongodb:// URI, or None for the user data dir.
        generator: an already loaded generator (then generator_path only names it).
        max_batch: most latents per generator call (1 = no micro-batching).
        max_wait_ms: how long the first request of a batch waits for others.
        workers: generator calls that may run at once (threads).
    """
    if generator is None:
        generator = load_generator(_resolve_generator(generator_path), device=device)
    gen = generator
    own_store = not isinstance(store, GalleryStore)
    gallery = open_store(store) if own_store else store
    mid = model_id(gen)
    tag_base = f"{mid}-{__version__}"  # an image depends on the weights and on ganime's sampling code
    nc = gen.model.num_classes
    if hasattr(gen, "stem_mean") and hasattr(gen.G, "stem") and hasattr(gen.G, "synthesis"):
        gen.stem_mean()  # the truncation mean: computed once here, not by the first slider move

    def run_generator(z: torch.Tensor, labels: torch.Tensor | None, psi: torch.Tensor) -> np.ndarray:
        # on a batcher thread; the library applies truncation, one call per distinct psi in the batch
        values = psi.unique()
        if len(values) == 1:
            return gen.images(z, labels, float(values[0]))
        out = np.empty((len(z), gen.resolution, gen.resolution, gen.model.channels), np.uint8)
        for v in values:
            idx = (psi == v).nonzero().squeeze(1)
            out[idx.numpy()] = gen.images(z[idx], None if labels is None else labels[idx], float(v))
        return out

    batcher = MicroBatcher(run_generator, max_batch, max_wait_ms, workers)
    info = {
        "name": "ganime",
        "version": __version__,
        "model_id": mid,
        "model": Path(gen.source).name,
        "resolution": gen.resolution,
        "channels": gen.model.channels,
        "z_dim": gen.z_dim,
        "gallery": "mongodb" if "mongodb" in gallery.location else "sqlite",
        "limits": LIMITS,
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.aclose()
        if own_store:
            gallery.close()

    app = FastAPI(
        title="ganime",
        version=__version__,
        description="Faces from a GAN: one per seed, the same bytes every time; grids, latent walks, a gallery.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.store = gallery
    app.state.generator = gen
    app.state.model_id = mid
    app.add_middleware(_BodyLimit, limit=MAX_BODY)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # faces drawn in the visitor's browser (web/site.py); its CSP needs 'wasm-unsafe-eval' (site.HEADERS)
    app.mount("/browser", BrowserSite(gen), name="browser")

    # --- errors: always JSON with what is allowed; a user's input never causes a 500 ---------------------

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(problems), limits=LIMITS)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(GanimeError)
    async def _user_error(request: Request, exc: GanimeError) -> JSONResponse:
        return _error(422, str(exc), limits=LIMITS)

    @app.exception_handler(BusyError)
    async def _busy(request: Request, exc: BusyError) -> JSONResponse:
        return JSONResponse({"error": f"busy: {exc}; retry"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal error")

    # --- helpers ------------------------------------------------------------------------------------------

    def latents(seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # the library's latents and truncation (run_generator), so the web and the CLI give the same pixels
        labels = torch.tensor([s % nc for s in seeds]) if nc else None
        return gen.latents(seeds), labels

    def image_response(data: bytes, media: str, etag: str | None, name: str) -> Response:
        headers = {"Content-Disposition": f'inline; filename="{name}"'}
        if etag is None:
            headers["Cache-Control"] = "no-store"
        else:
            headers |= {"ETag": etag, "Cache-Control": CACHE_SEEDED}
        return Response(data, media_type=media, headers=headers)

    def not_modified(request: Request, etag: str) -> Response | None:
        # RFC 9110 13.1.2: a list of tags, weak ones (W/"...") match too, "*" matches any
        header = request.headers.get("if-none-match")
        if header is None:
            return None
        tags = {t.strip().removeprefix("W/") for t in header.split(",")}
        if etag in tags or "*" in tags:
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_SEEDED})
        return None

    async def face_png(seed: int, truncation: float, size: int | None) -> bytes:
        z, labels = latents([seed])
        return await batcher.submit(z, labels, lambda imgs: encode_png(imgs[0], size), truncation)

    # --- page ---------------------------------------------------------------------------------------------

    index_html = (STATIC / "index.html").read_text(encoding="utf-8")
    csp = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"

    @app.get("/browser", include_in_schema=False)
    async def browser_page() -> RedirectResponse:
        return RedirectResponse("/browser/")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})

    # --- image API ----------------------------------------------------------------------------------------

    @app.get("/api/info", tags=["info"])
    async def api_info() -> dict[str, Any]:
        """The model, the gallery backend, the input limits and the batching counters."""
        return {**info, "batching": {"max_batch": batcher.max_batch, **batcher.stats.to_dict()}}

    @app.get("/api/face.png", tags=["images"], response_class=Response, responses=PNG)
    async def api_face(
        request: Request,
        seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="omit for a random face")] = None,
        truncation: Truncation = 1.0,
        size: Annotated[int | None, Query(ge=8, le=MAX_SIZE, description="width = height in pixels")] = None,
    ) -> Response:
        """One face. The same seed, truncation and size give the same PNG bytes."""
        etag = None
        if seed is None:
            seed = secrets.randbelow(2**32)
        else:
            etag = f'"{tag_base}-{seed}-{truncation!r}-{size or gen.resolution}"'
            if cached := not_modified(request, etag):
                return cached
        data = await face_png(seed, truncation, size)
        response = image_response(data, "image/png", etag, f"ganime-seed{seed}.png")
        response.headers["X-Seed"] = str(seed)
        return response

    @app.get("/api/grid.png", tags=["images"], response_class=Response, responses=PNG)
    async def api_grid(
        request: Request,
        n: Annotated[int, Query(ge=1, le=MAX_GRID)] = 16,
        seed: Seed = 0,
        truncation: Truncation = 1.0,
    ) -> Response:
        """A grid of n faces for seeds seed, seed+1, ..., seed+n-1."""
        if seed + n - 1 > MAX_SEED:
            return _error(422, f"seed + n - 1 must be <= {MAX_SEED}", limits=LIMITS)
        etag = f'"{tag_base}-grid-{n}-{seed}-{truncation!r}"'
        if cached := not_modified(request, etag):
            return cached
        z, labels = latents(list(range(seed, seed + n)))
        data = await batcher.submit(z, labels, lambda imgs: encode_png(make_grid(imgs)), truncation)
        return image_response(data, "image/png", etag, f"ganime-grid{seed}-{n}.png")

    @app.get("/api/interpolate.gif", tags=["images"], response_class=Response, responses=GIF)
    async def api_interpolate(
        request: Request,
        a: Seed,
        b: Seed,
        frames: Annotated[int, Query(ge=2, le=MAX_FRAMES)] = 24,
        truncation: Truncation = 1.0,
        size: Annotated[int | None, Query(ge=8, le=MAX_GIF_SIZE)] = None,
        fps: Annotated[int, Query(ge=1, le=50)] = 12,
    ) -> Response:
        """An animated spherical walk in latent space from seed a to seed b (both ends included), looping."""
        etag = f'"{tag_base}-walk-{a}-{b}-{frames}-{truncation!r}-{size or gen.resolution}-{fps}"'
        if cached := not_modified(request, etag):
            return cached
        za, zb = gen.latents([a, b])
        z = slerp(za, zb, torch.linspace(0, 1, frames))  # as generate.interpolate
        labels = torch.full((frames,), a % nc) if nc else None
        data = await batcher.submit(z, labels, lambda imgs: encode_gif(imgs, size, fps), truncation)
        return image_response(data, "image/gif", etag, f"ganime-walk{a}-{b}.gif")

    # --- gallery ------------------------------------------------------------------------------------------

    def item_json(item) -> dict[str, Any]:
        t = "" if item.truncation == 1.0 else f"&truncation={item.truncation!r}"
        return {
            **item.to_dict(),
            "image_url": f"/api/gallery/{item.id}/image.png",
            "permalink": f"/?seed={item.seed}{t}",
        }

    @app.post("/api/gallery", tags=["gallery"], status_code=201, dependencies=[Depends(_json_only)])
    async def gallery_add(body: Annotated[SaveRequest, Body()]) -> dict[str, Any]:
        """Save a face (regenerated here from seed and truncation) with tags."""
        tags = normalize_tags(body.tags)  # before generating: bad tags cost no generator time
        png = await face_png(body.seed, body.truncation, None)
        item = await run_in_threadpool(
            lambda: gallery.add(model_id=mid, seed=body.seed, truncation=body.truncation, png=png, tags=tags)
        )
        return item_json(item)

    @app.get("/api/gallery", tags=["gallery"])
    def gallery_list(
        response: Response,
        tag: Annotated[str | None, Query(max_length=MAX_TAG_LEN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> dict[str, Any]:
        """Saved faces, newest first; `tag` keeps those carrying that tag."""
        tag = tag or None
        response.headers["Cache-Control"] = "no-store"  # changes with every save and delete
        items = gallery.list(tag, limit, offset)
        return {"items": [item_json(i) for i in items], "total": gallery.count(tag), "tag": tag}

    @app.get("/api/tags", tags=["gallery"])
    def gallery_tags(response: Response) -> dict[str, int]:
        """Tags in use, with how many faces carry each."""
        response.headers["Cache-Control"] = "no-store"
        return gallery.tags()

    @app.get("/api/gallery/{item_id}", tags=["gallery"])
    def gallery_get(item_id: ItemId, response: Response) -> dict[str, Any]:
        response.headers["Cache-Control"] = "no-store"
        item = gallery.get(check_id(item_id))
        if item is None:
            raise HTTPException(404, f"no gallery item {item_id}")
        return item_json(item)

    @app.get("/api/gallery/{item_id}/image.png", tags=["gallery"], response_class=Response, responses=PNG)
    def gallery_image(item_id: ItemId) -> Response:
        data = gallery.image(check_id(item_id))
        if data is None:
            raise HTTPException(404, f"no gallery item {item_id}")
        return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @app.delete("/api/gallery/{item_id}", tags=["gallery"], status_code=204)
    def gallery_delete(item_id: ItemId) -> Response:
        if not gallery.delete(check_id(item_id)):
            raise HTTPException(404, f"no gallery item {item_id}")
        return Response(status_code=204)

    return app
