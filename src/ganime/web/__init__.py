"""`ganime serve`: a web page and HTTP API over a generator, with a tagged gallery (SQLite or MongoDB).

Needs the `web` extra (fastapi, uvicorn); `create_app` is imported lazily so `import ganime.web` is light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ganime.web.app import create_app

        return create_app
    raise AttributeError(f"module 'ganime.web' has no attribute {name!r}")
