"""Device and CPU-thread choices, resolved once at the entry point and passed down."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import torch

from ganime.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, mps or cpu; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps asked for, but MPS is not available; use --device cpu")
    return dev


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads do not speed up GEMMs/convs)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count() or 1
    siblings = cores = 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("siblings") and not siblings:
                    siblings = int(line.split(":")[1])
                elif line.startswith("cpu cores") and not cores:
                    cores = int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    per_core = siblings // cores if siblings and cores and siblings >= cores else 1
    return max(1, avail // per_core)


def set_threads(threads: int) -> int:
    """Set intra-op threads (0 = physical cores) and log the number; returns it.

    One thread per physical core: GEMM/conv kernels saturate a core's FMA units, so hyper-threads only add
    contention, and PyTorch's default (all logical CPUs) oversubscribes shared machines.
    """
    n = threads if threads > 0 else physical_cores()
    torch.set_num_threads(n)
    log.info("intra-op threads: %d (%s)", n, "as asked" if threads > 0 else "physical cores")
    return n


_threads_lock = threading.Lock()
_threads_held = [0, 0]  # bodies now inside torch_threads; the number of threads before the first of them


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with `threads` intra-op threads (0: leave the setting alone), then set back the number before.

    torch.set_num_threads sets the calling thread's pool and the default of threads that start torch work later,
    so a server narrows it around one request's work on that request's thread; bodies overlapping on several
    threads set back the number from before the first of them."""
    if threads <= 0:
        yield
        return
    with _threads_lock:
        if not _threads_held[0]:
            _threads_held[1] = torch.get_num_threads()
        _threads_held[0] += 1
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_held[0] -= 1
            torch.set_num_threads(_threads_held[1])


def configure_backends(device: torch.device) -> None:
    """Per-run backend flags, set at the entry point (never at import): TF32 and cuDNN autotuning on CUDA."""
    if device.type == "cuda":
        # TF32 matmuls/convs: ~fp32 quality for GAN training at a fraction of the cost (Ampere and later)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick the fastest kernels


def cpu_model() -> str:
    """The CPU's model name, for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
