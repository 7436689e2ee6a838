"""Numeric precision and memory layout of a run: fixed by the config, or timed at start-up ('auto').

A fixed choice is wrong somewhere: channels_last fp32 convolutions run 1.3-1.6x faster on most x86 CPUs,
bf16 autocast about 2x faster on CPUs with AVX-512-BF16/AMX but 6-10x slower on AVX2-only ones (emulated).
So `auto` first times one convolution in each precision and drops those over 3x slower than the fastest
(bf16 on AVX2: ~20x), then times a few training steps of each remaining candidate on this machine (at a small
batch, then the close ones at the real batch, alternating), keeps the fastest, and caches the choice per
(machine, torch version, model, batch) in a small JSON file ($GANIME_CACHE/runtime.json, else
~/.cache/ganime/runtime.json). The resolved choice is recorded in the run (runtime.json and every
checkpoint) and a resumed run reuses it, so resume stays bit-exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ganime.data.dataset import cache_root
from ganime.errors import ConfigError
from ganime.io import atomic_write_json

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CACHE_VERSION = 2  # 2: full-batch timings in alternating order, precisions screened by one convolution


@dataclass(frozen=True)
class Runtime:
    """How the train step runs: autocast dtype, memory layout, torch.compile."""

    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)
    channels_last: bool = False
    compile: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=DTYPES[self.precision])

    def label(self) -> str:
        return f"{self.precision}/{'channels_last' if self.channels_last else 'contiguous'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Runtime:
        return cls(str(d["precision"]), bool(d["channels_last"]), bool(d.get("compile", False)))


def supports(precision: str, device: torch.device) -> bool:
    """Whether autocast with `precision` can run on `device` at all (speed aside)."""
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return precision in ("bf16", "fp16")
    if device.type == "mps":
        return precision == "fp16"
    return False


def candidates(precision: str, channels_last: str, device: torch.device, compile: bool = False) -> list[Runtime]:
    """The runtimes `auto` chooses among (a fixed setting gives one candidate)."""
    if precision == "auto":
        # fp16 on CPU needs a GradScaler and is slower than bf16 everywhere we measured: not a CPU candidate
        wanted = ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "bf16", "fp16"]
        precs = [p for p in wanted if supports(p, device)]
    else:
        if precision not in DTYPES:
            raise ConfigError(f"precision {precision!r} unknown; use fp32, bf16, fp16 or auto")
        if not supports(precision, device):
            raise ConfigError(f"{precision} is not supported on {device}; use --precision fp32 or auto")
        precs = [precision]
    layouts = {"auto": [True, False], "on": [True], "off": [False]}.get(channels_last)
    if layouts is None:
        raise ConfigError(f"channels-last {channels_last!r} unknown; use on, off or auto")
    return [Runtime(p, cl, compile) for p in precs for cl in layouts]


def machine_id(device: torch.device, threads: int) -> str:
    """What a timing depends on besides the model: processor, ISA level, torch version, threads."""
    from ganime.device import cpu_model

    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{cpu_model()}|{torch.backends.cpu.get_cpu_capability()}|{threads} threads"
    return f"{device.type}|{hw}|{platform.machine()}|torch {torch.__version__}"


def cache_file() -> Path:
    """$GANIME_CACHE/runtime.json, else ~/.cache/ganime/runtime.json."""
    return cache_root() / "runtime.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def cached_choice(key: str) -> dict[str, Any] | None:
    """A cached entry {'runtime': {...}, 'timings': {...}} for `key`, if any."""
    entry = _read_cache().get(key)
    if not isinstance(entry, dict) or "runtime" not in entry:
        return None
    try:
        Runtime.from_dict(entry["runtime"])
    except (KeyError, TypeError, ValueError):
        return None
    return entry


def store_choice(key: str, entry: dict[str, Any]) -> None:
    """Add `entry` under `key` in the cache file (atomic write; a read-only home only loses the cache)."""
    path = cache_file()
    entries = _read_cache()
    entries[key] = entry
    try:
        atomic_write_json(path, {"version": CACHE_VERSION, "entries": entries})
    except OSError as e:
        log.warning("could not write the runtime cache %s: %s", path, e)


def conv_seconds(precision: str, device: torch.device, batch: int = 16) -> float:
    """Seconds for forward + backward of a mid-sized 3x3 convolution under `precision`'s autocast (best of 3)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
    x = torch.randn(batch, 64, 32, 32, generator=gen).to(device)
    rt = Runtime(precision)
    times = []
    for _ in range(4):  # the first call also picks the kernels: not counted
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with rt.autocast(device):
            y = conv(x)
        y.float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def drop_slow_precisions(
    cands: list[Runtime], seconds: Callable[[str], float], factor: float = 3.0
) -> tuple[list[Runtime], dict[str, float]]:
    """Candidates whose precision runs a convolution within `factor` of the fastest precision's time.

    A few milliseconds of one convolution spare the full-step probe of a precision that is emulated here
    (bf16 on AVX2 CPUs is 6-10x slower: probing it would cost minutes). Returns the kept candidates and each
    precision's convolution time in ms.
    """
    precs = sorted({c.precision for c in cands})
    if len(precs) < 2:
        return cands, {}
    t = {p: seconds(p) for p in precs}
    best = min(t.values())
    kept = [c for c in cands if t[c.precision] <= best * factor]
    return kept, {p: round(v * 1e3, 2) for p, v in t.items()}


def faster_alternative(
    kept: str, precisions: list[str], seconds: Callable[[str], float], factor: float = 3.0
) -> tuple[str, dict[str, float]] | None:
    """The precision to suggest when `auto`'s one-convolution screen would drop `kept` here (over `factor` times
    slower than the fastest of `precisions`), with each one's convolution time in ms; None when `kept` is fine.

    A resumed run keeps its recorded precision to stay bit-exact; this says when that costs a lot on this machine
    (bf16 recorded on an AMX CPU, resumed on an AVX2 one where it is emulated)."""
    precs = sorted(set(precisions) | {kept})
    if len(precs) < 2:
        return None
    kept_runtimes, ms = drop_slow_precisions([Runtime(p) for p in precs], seconds, factor)
    if any(r.precision == kept for r in kept_runtimes):
        return None
    return min(ms, key=ms.__getitem__), ms


def pick_fastest(
    cands: list[Runtime],
    seconds_per_image: Callable[[Runtime, int, int], float],
    batch_size: int,
    probe_batch: int = 16,
    slack: float = 2.0,
    precision_slack: float = 1.25,
) -> tuple[Runtime, dict[str, float]]:
    """Time each candidate and return the fastest, with img/s of every timing.

    Every candidate runs a few steps at a small probe batch; those within `slack` of the best, in a precision
    whose best probe is within `precision_slack` of the best, are then timed at the real batch, twice each in
    alternating order (A B, B A), keeping each one's best: a machine's noise hits all alike, and a small batch
    alone can rank layouts wrongly (hence the wide `slack`), while a precision 25 % slower at the probe batch
    has stayed as slow at the real one in every timing in docs/benchmarks.md (timing it again cost modern-128's
    choice 7 of its 15 s). `seconds_per_image(runtime, batch, steps)` times `steps` steps after a warm-up.
    """
    timings: dict[str, float] = {}
    if len(cands) == 1:
        return cands[0], timings
    probe = min(probe_batch, batch_size)
    spi = {}
    for c in cands:
        spi[c] = seconds_per_image(c, probe, 2)
        timings[f"{c.label()}@{probe}"] = round(1.0 / spi[c], 2)
    best = min(spi.values())
    by_precision = {c.precision: min(v for k, v in spi.items() if k.precision == c.precision) for c in cands}
    finalists = [c for c in cands if spi[c] <= best * slack and by_precision[c.precision] <= best * precision_slack]
    if len(finalists) > 1 and probe < batch_size:
        spi = {c: float("inf") for c in finalists}
        for order in (finalists, finalists[::-1]):
            for c in order:
                spi[c] = min(spi[c], seconds_per_image(c, batch_size, 2))
        for c in finalists:
            timings[f"{c.label()}@{batch_size}"] = round(1.0 / spi[c], 2)
    winner = min(finalists, key=lambda c: spi[c])
    return winner, timings
