"""Micro-batching: concurrent requests' latents go through the generator in one call, off the event loop.

A request submits its latents (one for a face, n for a grid, frames for a walk), its truncation psi and an
optional `finish` function (e.g. PNG or GIF encoding) that runs on the worker thread with that request's
images. The generator function gets the whole batch with one psi per latent. The scheduler
waits for the first request, then for a free worker, then up to `max_wait_ms` for more, and sends what
it has (up to `max_batch` latents) as one batch: at low load a face costs one small call plus the wait,
under load requests pile up while a worker is busy and batches grow by themselves.

Fairness (what `ganime serve` turns on): with `fast_lane`, single faces have their own queue and worker
thread, so they never wait behind a 120-frame walk; grids and walks share the bulk lane, which takes the
job of the client served least recently first (round robin between clients, FIFO within one). With
`per_client`, one client (named by the `client` callable, e.g. its address) has at most that many jobs
submitted; its others wait their turn, and past `max_waiting` it gets ClientBusyError. On Linux the bulk
lane's threads run at a lower CPU priority (nice +10) than the rest of the server. Each job's work is
measured (its share of the generator call plus its own encoding, in CPU seconds of the worker thread) and
handed to `on_work` in the submitting request's task, so the caller can charge what it really cost.

Batching does not change pixels: a sample's output does not depend on what else is in the batch (eval
mode; checked byte for byte in tests/web/test_api.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
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


class ClientBusyError(BusyError):
    """One client has too many renders waiting; that client should retry later."""


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
    client: str = "-"
    seconds: float = 0.0  # measured on the worker: its share of the generator call plus its finish


class _Lane:
    """One queue with its scheduler, worker threads and slots (`MicroBatcher` has one or two)."""

    def __init__(self, name: str, workers: int, fair: bool) -> None:
        self.name, self.workers, self.fair = name, workers, fair
        self.pending: deque[_Job] = deque()
        self.latents = 0
        self.executor: ThreadPoolExecutor | None = None
        self.scheduler: asyncio.Task | None = None
        self.wakeup: asyncio.Event | None = None
        self.slots: asyncio.Semaphore | None = None
        self.served: dict[str, int] = {}  # client -> when it was last served (a counter), for round robin
        self.turn = 0

    def next_index(self) -> int:
        """Which pending job goes next: FIFO, or in a fair lane the first of the least recently served client."""
        if not self.fair:
            return 0
        best, best_key = 0, None
        for i, job in enumerate(self.pending):
            key = self.served.get(job.client, -1)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best


BULK_NICE = 10


def _lower_priority() -> None:
    """On Linux, run this (bulk-lane) thread at a lower CPU priority than the event loop and the fast lane,
    so on a busy machine the kernel gives a core to a single face before a walk's next frames."""
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BULK_NICE)
        except OSError:  # not allowed here: same priority as the others
            pass


class MicroBatcher:
    """Coalesces concurrent generator requests; `submit` is awaited from the event loop."""

    def __init__(
        self,
        generate: GenerateFn,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        workers: int = 1,
        max_queue: int = 4096,
        *,
        fast_lane: bool = False,
        per_client: int = 0,
        max_waiting: int = 32,
        client: Callable[[], str] = lambda: "-",
        on_work: Callable[[float], None] | None = None,
    ) -> None:
        if max_batch < 1 or workers < 1 or max_wait_ms < 0 or max_queue < 1 or per_client < 0:
            raise ValueError("max_batch, workers and max_queue must be >= 1, max_wait_ms and per_client >= 0")
        self.generate = generate
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.workers = workers
        self.max_queue = max_queue
        self.per_client, self.max_waiting, self.client, self.on_work = per_client, max_waiting, client, on_work
        self.stats = BatcherStats()
        # the bulk lane takes every job unless there is a fast lane for single faces
        self._bulk = _Lane("bulk", workers, fair=fast_lane)
        self._fast = _Lane("fast", 1, fair=False) if fast_lane else None
        self._lanes = [lane for lane in (self._fast, self._bulk) if lane is not None]
        self._stats_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task] = set()
        self._client_slots: dict[str, asyncio.Semaphore] = {}
        self._client_jobs: dict[str, int] = {}  # submitted or waiting, per client

    @property
    def _pending_latents(self) -> int:
        return sum(lane.latents for lane in self._lanes)

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(lane.scheduler is not None and not lane.scheduler.done() for lane in self._lanes):
            return
        # first use, or a new event loop (e.g. a test client started a fresh one): start over on this loop
        self._loop = loop
        self._client_slots.clear()
        self._client_jobs.clear()
        for lane in self._lanes:
            lane.wakeup = asyncio.Event()
            lane.slots = asyncio.Semaphore(lane.workers)
            if lane.executor is None:
                lane.executor = ThreadPoolExecutor(
                    lane.workers,
                    thread_name_prefix=f"ganime-{lane.name}",
                    initializer=_lower_priority if lane.fair else None,  # the bulk lane beside a fast one
                )
            lane.scheduler = loop.create_task(self._schedule(lane), name=f"ganime-batcher-{lane.name}")

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
        client = self.client() if self.per_client or self._fast is not None else "-"
        if not self.per_client:
            return await self._enqueue(z, labels, finish, truncation, client)
        waiting = self._client_jobs.get(client, 0) - self.per_client
        if waiting >= self.max_waiting:
            raise ClientBusyError(f"{self.per_client} renders in flight and {waiting} waiting from your address")
        slots = self._client_slots.setdefault(client, asyncio.Semaphore(self.per_client))
        self._client_jobs[client] = self._client_jobs.get(client, 0) + 1
        try:
            async with slots:  # at most per_client jobs of one client in the lanes; the others wait here
                return await self._enqueue(z, labels, finish, truncation, client)
        finally:
            self._client_jobs[client] -= 1
            if not self._client_jobs[client]:
                del self._client_jobs[client], self._client_slots[client]

    async def _enqueue(
        self, z: Tensor, labels: Tensor | None, finish: Callable[[np.ndarray], Any] | None, truncation: float, client: str
    ) -> Any:
        lane = self._fast if self._fast is not None and len(z) == 1 else self._bulk
        job = _Job(z, labels, finish, self._loop.create_future(), truncation, client)
        lane.pending.append(job)
        lane.latents += len(z)
        lane.wakeup.set()
        try:
            return await job.future
        finally:
            if self.on_work is not None and job.seconds:
                self.on_work(job.seconds)  # in the request's own task: it can charge the right client

    async def _schedule(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not lane.pending:
                lane.wakeup.clear()
                await lane.wakeup.wait()
            await lane.slots.acquire()
            deadline = loop.time() + self.max_wait
            while lane.latents < self.max_batch and (remaining := deadline - loop.time()) > 0:
                lane.wakeup.clear()
                try:
                    await asyncio.wait_for(lane.wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(lane)
            if not batch:
                lane.slots.release()
                continue
            task = loop.create_task(self._run(lane, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self, lane: _Lane) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while lane.pending:
            index = lane.next_index()
            job = lane.pending[index]
            if batch and size + len(job.z) > self.max_batch:
                break
            del lane.pending[index]
            lane.latents -= len(job.z)
            if job.future.done():  # the client went away while waiting
                continue
            if lane.fair:
                lane.turn += 1
                lane.served[job.client] = lane.turn
                if len(lane.served) > 10_000:  # bounded: forget clients with nothing queued
                    queued = {j.client for j in lane.pending}
                    lane.served = {c: t for c, t in lane.served.items() if c in queued}
            batch.append(job)
            size += len(job.z)
        return batch

    async def _run(self, lane: _Lane, batch: list[_Job]) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(lane.executor, self._compute, batch)
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
            lane.slots.release()

    def _compute(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        # on a worker thread
        z = torch.cat([j.z for j in batch]) if len(batch) > 1 else batch[0].z
        labels = None
        if any(j.labels is not None for j in batch):
            labels = torch.cat([j.labels for j in batch])
        # float64: psi reaches the generator exactly as the request gave it (0.7, not 0.699999988)
        psi = torch.cat([torch.full((len(j.z),), j.truncation, dtype=torch.float64) for j in batch])
        # CPU time of this worker thread (torch runs its 1-thread ops here): what the work cost, not how long
        # it waited for a core on a busy machine (which would charge a client for another's load)
        t0 = time.thread_time()
        images = self.generate(z, labels, psi)
        per_latent = (time.thread_time() - t0) / len(z)
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
            t0 = time.thread_time()
            try:
                out.append((True, job.finish(own) if job.finish else own))
            except Exception as e:  # noqa: BLE001 - one request's bad finish must not fail the others
                out.append((False, e))
            job.seconds = per_latent * len(job.z) + time.thread_time() - t0  # read after the future is set
        return out

    async def aclose(self) -> None:
        """Stop the schedulers, fail waiting requests, wait for running batches, stop the threads."""
        for lane in self._lanes:
            if lane.scheduler is not None:
                lane.scheduler.cancel()
                try:
                    await lane.scheduler
                except (asyncio.CancelledError, RuntimeError):
                    pass
                lane.scheduler = None
            for job in lane.pending:
                if not job.future.done():
                    job.future.set_exception(BusyError("server is shutting down"))
            lane.pending.clear()
            lane.latents = 0
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the worker threads (after running batches end)."""
        for lane in self._lanes:
            if lane.executor is not None:
                lane.executor.shutdown(wait=True)
                lane.executor = None
