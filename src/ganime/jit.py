"""The decorator for ganime's numba kernels: nopython, GIL released, compiled code cached on disk.

numba keeps its cache next to the source, else in the user's cache folder; where neither can be written (a
read-only install and home) it refuses `cache=True` when the function is defined. Then the kernels are compiled
in each process instead (~10 s on first use) rather than failing the import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def kernel(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`numba.njit(nogil=True, cache=True, **options)`, without the cache where numba has nowhere to keep it."""

    def wrap(f: Callable[..., Any]) -> Any:
        try:
            return numba.njit(nogil=True, cache=True, **options)(f)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, cache=False, **options)(f)

    return wrap(fn) if fn is not None else wrap
