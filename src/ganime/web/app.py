"""The web app: a page that shows a new face on every load, an image API and a tagged gallery.

`create_app` loads the generator once and wires the routers (page.py, images.py, gallery.py) to one
`Served` value; every image goes through one `MicroBatcher`, so concurrent requests share generator calls
and inference never runs on the event loop. Images depend only on (model, seed, truncation, size): same
query, same bytes. `security.Guard` wraps it all (hosts, tokens, CSRF, rate limits, headers, access log).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ganime import __version__
from ganime.errors import GanimeError
from ganime.generate import LoadedGenerator, load_generator
from ganime.web import edits, gallery, images, info, page
from ganime.web.batcher import BusyError, ClientBusyError, MicroBatcher
from ganime.web.limiter import RateLimited, RateLimiter, current_client
from ganime.web.meta import STATIC, model_id, page_text, render_page, resolve_generator
from ganime.web.security import Guard, ServePolicy
from ganime.web.served import LIMITS, MAX_BODY, MAX_SEED, Served, limits_error, settle
from ganime.web.site import BrowserSite
from ganime.web.store import GalleryFullError, GalleryStore, StoreBusyError, open_store

log = logging.getLogger(__name__)

__all__ = ["LIMITS", "MAX_SEED", "ServePolicy", "create_app"]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error; a 4xx carries the input limits (what would have been accepted)."""
    extra = {"limits": LIMITS} if 400 <= status < 500 else {}
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class _BodyLimit:
    """Reject request bodies over `limit` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(413, f"request body over {self.limit} bytes")
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


# --- errors: always JSON with what is allowed; a user's input never causes a 500 -----------------------------


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
        problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return limits_error(422, "; ".join(problems))


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    # Starlette's own 4xx (a body that is not JSON, too deeply nested JSON, 404, 405) carry the limits too
    return _error(exc.status_code, str(exc.detail), exc.headers)


async def _user_error(request: Request, exc: GanimeError) -> JSONResponse:
    if isinstance(exc, StoreBusyError):  # a locked database or an unreachable MongoDB: try again soon
        log.warning("gallery busy on %s %s: %s", request.method, request.url.path, exc)
        # the detail (a file path, a database host) is for the log, not for the client
        return JSONResponse(
            {"error": "the gallery is busy; retry in a moment"}, status_code=503, headers={"Retry-After": "2"}
        )
    if isinstance(exc, GalleryFullError):  # the store's own write refused it: the quota holds across processes
        return _error(507, str(exc))
    return limits_error(422, str(exc))


async def _busy(request: Request, exc: BusyError) -> JSONResponse:
    return JSONResponse({"error": f"busy: {exc}; retry"}, status_code=503, headers={"Retry-After": "1"})


async def _client_busy(request: Request, exc: ClientBusyError) -> JSONResponse:
    return _error(429, f"too many renders from your address ({exc}); retry", {"Retry-After": "1"})


async def _limited(request: Request, exc: RateLimited) -> JSONResponse:
    return _error(429, str(exc), {"Retry-After": exc.header})


ERROR_HANDLERS: dict[type[Exception], Callable[..., Awaitable[JSONResponse]]] = {
    RequestValidationError: _invalid,
    HTTPException: _http,
    GanimeError: _user_error,
    BusyError: _busy,
    ClientBusyError: _client_busy,
    RateLimited: _limited,
}


class _RetryingSite:
    """/browser/ (web/site.BrowserSite) that tries again after a failed build: a 503 there (onnxruntime-web
    missing at the first visit) is answered as JSON with the paths of this machine cut out (they go to the
    log), and after `retry_s` the next visit builds the page anew instead of failing until a restart."""

    def __init__(self, make: Callable[[], Any], retry_s: float = 30.0) -> None:
        self.make, self.retry_s = make, retry_s
        self.site, self.failed_at = make(), None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.failed_at is not None and time.monotonic() - self.failed_at >= self.retry_s:
            self.site, self.failed_at = self.make(), None
        failed, detail = [False], bytearray()

        async def checked_send(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 500:
                failed[0] = True
            elif not failed[0]:
                await send(message)
            elif message["type"] == "http.response.body":
                detail.extend(message.get("body", b""))
                if not message.get("more_body"):
                    text = detail.decode(errors="replace")[:500]
                    log.warning("/browser/ is unavailable (retried in %g s): %s", self.retry_s, text)
                    after = str(round(self.retry_s))
                    answer = _error(503, f"{_PATH.sub('<path>', text)}; retry in {after} s", {"Retry-After": after})
                    await answer(scope, receive, send)

        await self.site(scope, receive, checked_send)
        if failed[0] and self.failed_at is None:
            self.failed_at = time.monotonic()


# a file system path in a message (absolute, home-relative or Windows), not a URL path such as /browser/
_PATH = re.compile(r"(?<![\w:/.])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])+[^\s'\";,]*")


def create_app(
    generator_path: str | Path | None = None,
    store: GalleryStore | str | Path | None = None,
    *,
    generator: LoadedGenerator | None = None,
    device: str | torch.device = "cpu",
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    workers: int = 1,
    policy: ServePolicy | None = None,
) -> FastAPI:
    """The FastAPI app for a generator (run dir, ckpt-* dir, .safetensors; None = the shipped one).

    Args:
        store: a GalleryStore, a .sqlite path, a directory, a mongodb:// URI, or None for the user data dir.
        generator: an already loaded generator (then generator_path only names it).
        max_batch: most latents per generator call (1 = no micro-batching).
        max_wait_ms: how long the first request of a batch waits for others.
        workers: generator calls that may run at once (threads).
        policy: hosts, admin token, read-only, rate limit and quota (default: loopback names, writes open).
    """
    policy = policy or ServePolicy()
    if generator is None:
        generator = load_generator(resolve_generator(generator_path), device=device)
    gen = generator
    own_store = not isinstance(store, GalleryStore)
    gallery_store = open_store(store) if own_store else store
    mid = model_id(gen)
    if gen.feature_truncation:
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

    # single faces get their own lane and worker (walks never hold them up); a client has at most
    # policy.renders_per_client renders in flight; each render's measured work is charged to its client
    batcher = MicroBatcher(
        run_generator,
        max_batch,
        max_wait_ms,
        workers,
        fast_lane=True,
        per_client=policy.renders_per_client,
        client=current_client,
        on_work=settle,
    )
    title, subtitle = page_text(gen)
    about = {
        "name": "ganime",
        "version": __version__,
        "model_id": mid,
        "model": Path(gen.source).name,
        "title": title,
        "resolution": gen.resolution,
        "channels": gen.model.channels,
        "z_dim": gen.z_dim,
        "gallery": "mongodb" if "mongodb" in gallery_store.location else "sqlite",
        "writes": policy.writes,
        "limits": LIMITS,
    }
    limiter = RateLimiter(policy.rate, policy.burst, policy.max_clients)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.aclose()
        if own_store:
            gallery_store.close()

    app = FastAPI(
        title="ganime",
        version=__version__,
        description="Faces from a GAN: one per seed, the same bytes every time; grids, latent walks, a gallery.",
        lifespan=lifespan,
        docs_url=None,  # /docs is page.docs: plain HTML, no Swagger UI from a CDN
        redoc_url=None,
    )
    app.state.served = Served(gen, batcher, gallery_store, mid, f"{mid}-{__version__}", policy, limiter, about)
    app.state.page_html = render_page((STATIC / "index.html").read_text(encoding="utf-8"), title, subtitle)
    # kept for scripts and tests that reach in (benchmarks, the CLI's start-up line)
    app.state.batcher, app.state.store, app.state.generator, app.state.model_id = batcher, gallery_store, gen, mid
    app.add_middleware(_BodyLimit, limit=MAX_BODY)
    app.add_middleware(Guard, policy=policy, limiter=limiter, routes=lambda: app.routes, limits=LIMITS)
    # faces drawn in the visitor's browser (web/site.py): its own CSP allows WebAssembly ('wasm-unsafe-eval')
    app.mount("/browser", _RetryingSite(lambda: BrowserSite(gen)), name="browser")

    for kind, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(kind, handler)
    for router in (page.router, images.router, gallery.router, info.router, edits.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
