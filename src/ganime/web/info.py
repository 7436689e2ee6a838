"""`/api/info`: the model, the gallery backend, whether writes need a token, the input limits, batching counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ganime.web.served import Served, served

router = APIRouter(tags=["info"])


@router.get("/api/info")
async def api_info(s: Served = Depends(served)) -> dict[str, Any]:
    """The model, the gallery backend, whether writes need a token, the input limits, batching counters."""
    return {**s.info, "batching": {"max_batch": s.batcher.max_batch, **s.batcher.stats.to_dict()}}
