"""Micro-batching: concurrent requests' latents go through the generator in one call, off the event loop.

A request submits its latents (one for a face, n for a grid, frames for a walk), its truncation psi and an
optional `finish` function (e.g. PNG encoding) that runs on the worker thread with that request's images.
The generator function gets the whole batch with one psi per latent. The scheduler
waits for the first request, then for a free worker, then up to `max_wait_ms` for more, and sends what
it has (up to `max_batch` latents) as one batch: at low load a face costs one small call plus the wait,
under load requests pile up while a worker is busy and batches grow by themselves.

Batching does not change pixels: a sample's output does not depend on what else is in the batch (eval
mode; checked byte for byte in tests/web/test_api.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

GenerateFn = Callable[[Tensor, Tensor | None, Tensor], np.ndarray]  # (z, labels, psi per latent) -> uint8 NHWC


class BusyError(RuntimeError):
    """Too many latents are waiting; the caller should retry later."""


@dataclass
class BatcherStats:
    """Counters for tests, the benchmark and /api/info."""

    calls: int = 0  # generator calls
    requests: int = 0  # submitted jobs that were run
    latents: int = 0
    largest_batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Job:
    z: Tensor
    labels: Tensor | None
    finish: Callable[[np.ndarray], Any] | None
    future: asyncio.Future = field(repr=False)
    truncation: float = 1.0


class MicroBatcher:
    """Coalesces concurrent generator requests; `submit` is awaited from the event loop."""

    def __init__(
        self,
        generate: GenerateFn,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        workers: int = 1,
        max_queue: int = 4096,
    ) -> None:
        if max_batch < 1 or workers < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch, workers and max_queue must be >= 1 and max_wait_ms >= 0")
        self.generate = generate
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.workers = workers
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._pending: deque[_Job] = deque()
        self._pending_latents = 0
        self._stats_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduler: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._scheduler is not None and not self._scheduler.done():
            return
        # first use, or a new event loop (e.g. a test client started a fresh one): start over on this loop
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ganime-generate")
        self._scheduler = loop.create_task(self._schedule(), name="ganime-batcher")

    async def submit(
        self,
        z: Tensor,
        labels: Tensor | None = None,
        finish: Callable[[np.ndarray], Any] | None = None,
        truncation: float = 1.0,
    ) -> Any:
        """Generate images for latents z (N, z_dim); returns finish(images) or the uint8 NHWC images."""
        self._ensure_started()
        if self._pending_latents + len(z) > self.max_queue:
            raise BusyError(f"{self._pending_latents} latents already queued")
        job = _Job(z, labels, finish, self._loop.create_future(), truncation)
        self._pending.append(job)
        self._pending_latents += len(z)
        self._wakeup.set()
        return await job.future

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()
            deadline = loop.time() + self.max_wait
            while self._pending_latents < self.max_batch and (remaining := deadline - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self._pending:
            job = self._pending[0]
            if batch and size + len(job.z) > self.max_batch:
                break
            self._pending.popleft()
            self._pending_latents -= len(job.z)
            if job.future.done():  # the client went away while waiting
                continue
            batch.append(job)
            size += len(job.z)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._compute, batch)
            for job, (ok, value) in zip(batch, results):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
        except Exception as e:  # noqa: BLE001 - the generator failed: every waiting request gets the error
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
        finally:
            self._slots.release()

    def _compute(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        # on a worker thread
        z = torch.cat([j.z for j in batch]) if len(batch) > 1 else batch[0].z
        labels = None
        if any(j.labels is not None for j in batch):
            labels = torch.cat([j.labels for j in batch])
        # float64: psi reaches the generator exactly as the request gave it (0.7, not 0.699999988)
        psi = torch.cat([torch.full((len(j.z),), j.truncation, dtype=torch.float64) for j in batch])
        images = self.generate(z, labels, psi)
        with self._stats_lock:
            self.stats.calls += 1
            self.stats.requests += len(batch)
            self.stats.latents += len(z)
            self.stats.largest_batch = max(self.stats.largest_batch, len(z))
        out: list[tuple[bool, Any]] = []
        start = 0
        for job in batch:
            own = images[start : start + len(job.z)]
            start += len(job.z)
            try:
                out.append((True, job.finish(own) if job.finish else own))
            except Exception as e:  # noqa: BLE001 - one request's bad finish must not fail the others
                out.append((False, e))
        return out

    async def aclose(self) -> None:
        """Stop the scheduler, fail waiting requests, wait for running batches, stop the threads."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            try:
                await self._scheduler
            except (asyncio.CancelledError, RuntimeError):
                pass
            self._scheduler = None
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(BusyError("server is shutting down"))
        self._pending.clear()
        self._pending_latents = 0
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the worker threads (after running batches end)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
