"""What every route needs: the loaded generator, the batcher, the gallery, the policy; and the input limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from fastapi import Request
from fastapi.responses import JSONResponse

from ganime.generate import LoadedGenerator
from ganime.web.batcher import MicroBatcher
from ganime.web.encode import encode_png
from ganime.web.limiter import RateLimiter, current_visit
from ganime.web.meta import MAX_SEED
from ganime.web.security import ServePolicy, client_of
from ganime.web.store import MAX_TAG_LEN, MAX_TAGS, GalleryStore

MAX_SIZE = 1024
MAX_GIF_SIZE = 256
MAX_GRID = 64
MAX_FRAMES = 120
# The CPU cost cap of one request, in output pixels: a 1024 px face (1 Mpx), a 32-frame 256 px walk or a
# 120-frame 128 px one (2 Mpx). A 120-frame 256 px walk took 1.2 s of CPU and 3.2 MB: it is refused.
MAX_PIXELS = 2**21
MAX_BODY = 16 * 1024
LIMITS = {
    "seed": [0, MAX_SEED],
    "truncation": "0 < truncation <= 1",
    "size": [8, MAX_SIZE],
    "n": [1, MAX_GRID],
    "frames": [2, MAX_FRAMES],
    "gif_size": [8, MAX_GIF_SIZE],
    "fps": [1, 50],
    "pixels_per_request": MAX_PIXELS,
    "tags_per_item": MAX_TAGS,
    "tag_length": MAX_TAG_LEN,
    "tag_chars": "letters, digits, '_' and '-' (not first)",
    "body_bytes": MAX_BODY,
}


def limits_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "limits": LIMITS, **extra}, status_code=status)


@dataclass(frozen=True)
class Served:
    """The app's shared parts, built once by `create_app` and handed to every route."""

    gen: LoadedGenerator
    batcher: MicroBatcher
    store: GalleryStore
    model_id: str
    tag_base: str  # ETag prefix: an image depends on the weights and on ganime's sampling code
    policy: ServePolicy
    limiter: RateLimiter
    info: dict[str, Any]

    def latents(self, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # the library's latents and truncation, so the web and the CLI give the same pixels
        nc = self.gen.model.num_classes
        labels = torch.tensor([s % nc for s in seeds]) if nc else None
        return self.gen.latents(seeds), labels

    async def face_png(self, seed: int, truncation: float, size: int | None) -> bytes:
        z, labels = self.latents([seed])
        return await self.batcher.submit(z, labels, lambda imgs: encode_png(imgs[0], size), truncation)

    def charge(self, request: Request, units: float) -> None:
        """Spend a client's rate budget on generator work before it starts (raises RateLimited: a 429); once
        the work is done, `settle` charges what it measured beyond that."""
        visit = current_visit()
        if visit is not None:
            visit.charge(units)
        else:
            self.limiter.charge(client_of(request.scope), units)


def settle(seconds: float) -> None:
    """The batcher's `on_work`: charge the request being served for its measured rendering time (generator
    share plus PNG or GIF encoding), beyond its upfront estimate, as debt on its client's budget."""
    visit = current_visit()
    if visit is not None:
        visit.settle(seconds)


def served(request: Request) -> Served:
    """FastAPI dependency: the app's `Served`."""
    return request.app.state.served
