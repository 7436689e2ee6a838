"""Data-parallel training under `torchrun`: process group, DDP for G and D, sharded data, rank-0-only outputs.

    torchrun --nproc-per-node 2 -m ganime train --preset modern --out runs/ddp

What each piece guarantees (see README "Multi-GPU and multi-node"):

- `cfg.batch_size` is the *global* batch. The loader gives rank r the r-th slice of every global batch of the
  single-process order, and every rank draws the latents of the whole global batch from the shared latent stream
  and keeps its slice, so data and latents are those of a 1-process run with the same seed and batch.
- G and D are wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA, one GPU per LOCAL_RANK); DDP
  averages gradients, so with `sync_bn` (BatchNorm statistics over the global batch) a W-process run computes
  the 1-process run's update up to float summation order. Without it BatchNorm normalises each rank's shard.
- Per-rank randomness (DiffAugment draws, D dropout) is reseeded every step from (seed, rank, step): ranks draw
  different augmentations, and resume is exact without per-rank RNG state in the checkpoint. These draws are
  the one place where a W-process run differs from the 1-process run by design.
- Only rank 0 writes (checkpoints, grids, metrics, plots, progress bar). Stop decisions (signal on any rank,
  time budget) are agreed on by all ranks every step, so all ranks stop after the same step and rank 0 saves.
- A rank that dies makes the others' next collective fail: they exit without writing (their state may be
  mid-step), with a `DistributedError` naming the last (intact, atomically written) checkpoint. Under
  `torchrun --max-restarts N` the restarted workers resume from it by themselves.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ganime import checkpoint as ckpt_io
from ganime import runlock
from ganime.device import physical_cores, resolve_device
from ganime.errors import ConfigError, GanimeError
from ganime.training.precision import Runtime

log = logging.getLogger(__name__)

TIMEOUT_ENV = "GANIME_DIST_TIMEOUT"  # seconds a collective may wait for a silent (hung, not dead) peer
DEFAULT_TIMEOUT_S = 600
# what peer loss looks like from a surviving rank: gloo closes sockets, nccl's watchdog aborts, the store is gone
_PEER_LOST = ("gloo", "connection closed", "connection reset", "broken pipe", "nccl", "timed out", "socket", "peer")


class DistributedError(GanimeError):
    """Another rank of the job failed, was killed, or the ranks disagree about the run."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job; world_size 1 (the default) means a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""
    control: Any = None  # process group for small CPU control messages (gloo)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def threads(self, asked: int) -> int:
        """Intra-op CPU threads: as asked, else this machine's physical cores shared by its local ranks."""
        return asked if asked > 0 else max(1, physical_cores() // self.local_world_size)

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag ORed over all ranks (one tiny all-reduce), so every rank takes the same branch."""
        if not self.distributed:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return tuple(bool(v) for v in t.tolist())

    def mean(self, row: dict[str, float]) -> dict[str, float]:
        """Each value averaged over ranks (a logged loss is then that of the global batch, not rank 0's shard)."""
        if not self.distributed:
            return row
        t = torch.tensor(list(row.values()), dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return dict(zip(row, (t / self.world_size).tolist()))

    def from_main(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 only and give every rank its (JSON-able) result."""
        if not self.distributed:
            return fn()
        payload = [json.dumps(fn()) if self.is_main else None]
        dist.broadcast_object_list(payload, src=0, group=self.control)
        return json.loads(payload[0])

    def main_first(self, fn: Callable[[], Any]) -> Any:
        """`fn` on each node's local rank 0 first, then on the other ranks (e.g. building a shared cache once)."""
        if not self.distributed:
            return fn()
        out = fn() if self.local_rank == 0 else None
        dist.barrier(group=self.control)
        return out if self.local_rank == 0 else fn()

    def runtime(self, resolve: Callable[[], tuple[Runtime, dict]]) -> tuple[Runtime, dict]:
        """Rank 0 resolves precision/layout (timing `auto` once) and every rank uses its choice; no torch.compile
        under DDP (Trainer's compile fallback would swap in the bare modules and drop the gradient sync)."""
        if not self.distributed:
            return resolve()

        def on_main() -> list:
            rt, info = resolve()
            return [rt.to_dict(), info]

        rt_dict, info = self.from_main(on_main)
        rt = Runtime.from_dict(rt_dict)
        if rt.compile:
            if self.is_main:
                log.warning("torch.compile is not used under torchrun (DDP): running eager")
            rt = dataclasses.replace(rt, compile=False)
        return rt, info

    def seed_step(self, seed: int, step: int, aug_gen: torch.Generator) -> None:
        """Reseed the per-rank streams (global torch RNG: dropout; DiffAugment's generator) for `step`."""
        if not self.distributed:
            return
        a, b = np.random.SeedSequence([seed, self.rank, step]).generate_state(2, np.uint64)
        torch.manual_seed(int(a) >> 1)  # CPU and every CUDA device
        aug_gen.manual_seed(int(b) >> 1)


def all_true(flag: Tensor) -> bool:
    """`flag` (a 0-d bool tensor) ANDed over the ranks of a running job: e.g. every rank skips a non-finite
    update together, whichever rank saw it, so their collectives stay in step. Just `flag` outside torchrun."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return bool(flag)
    t = flag.to(torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def world_from_env() -> tuple[int, int, int, int]:
    """(rank, world_size, local_rank, local_world_size) as torchrun sets them; (0, 1, 0, 1) outside it."""

    def num(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            raise ConfigError(f"environment variable {name}={os.environ[name]!r} is not a number") from None

    world = num("WORLD_SIZE", 1)
    rank, local_rank = num("RANK", 0), num("LOCAL_RANK", 0)
    local_world = num("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} / WORLD_SIZE={world} are inconsistent; launch with torchrun")
    return rank, world, local_rank, local_world


def elastic_restart() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt or outside torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


@contextmanager
def session(device_name: str, run_dir: str | Path) -> Iterator[DistEnv]:
    """Join the torchrun job (if any) for one `train` call; turn a lost peer into a one-line DistributedError."""
    rank, world, local_rank, local_world = world_from_env()
    device = resolve_device(device_name)
    if world == 1:
        yield DistEnv(device=device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)  # one GPU per process on each node
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPUs; "
                "use --nproc-per-node <= the number of GPUs"
            )
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"multi-process training runs on cpu (gloo) or cuda (nccl), not {device.type}")
    owned = not dist.is_initialized()
    if owned:
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        kw = {"device_id": device} if backend == "nccl" else {}
        # torchrun's store outlives a worker restart (--max-restarts): without a per-attempt prefix the new
        # workers read the dead ones' addresses from it and fail to connect
        try:
            store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        except ValueError as e:  # RANK/WORLD_SIZE set by hand without MASTER_ADDR/MASTER_PORT
            raise ConfigError(f"{e}; start several processes with torchrun (README: Multi-GPU and multi-node)") from None
        store = dist.PrefixStore(f"ganime/attempt-{elastic_restart()}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout, **kw)
    control = dist.new_group(backend="gloo") if backend == "nccl" else None
    env = DistEnv(rank, world, local_rank, local_world, device, backend, control)
    if not env.is_main:  # rank 0 speaks for the job; the others only warn
        logging.getLogger("ganime").setLevel(max(logging.WARNING, logging.getLogger("ganime").level))
    if env.is_main:
        log.info("distributed: %d processes (%s), %d on this node; batch shards of the global batch", world, backend, local_world)
    failed = False
    try:
        yield env
    except GanimeError:
        failed = True
        raise
    except Exception as e:  # sorted below: a lost peer gets a clear message, anything else re-raises
        failed = True
        if not _is_peer_loss(e):
            raise
        last = ckpt_io.latest_checkpoint(Path(run_dir)) if Path(run_dir).is_dir() else None
        if last is not None:
            where = (f"the last checkpoint {last} is intact; torchrun --max-restarts N resumes from it by itself, "
                     f"or rerun with --resume {run_dir}")
        else:
            where = "no checkpoint had been written yet; rerun the same command"
        raise DistributedError(
            f"rank {rank} of {world}: another process of this job failed or was killed ({_peer_error(e)}); "
            f"stopped without saving; {where}"
        ) from None
    finally:
        if owned and not failed:
            # every rank reaches the end before any tears its connections down: a rank that destroyed its group
            # while the other still read from it aborted now and then ("terminate called without an active
            # exception", SIGABRT, about 1 run in 5 of tests/distributed/test_torchrun.py on 2 cores)
            dist.barrier(group=control)
            dist.destroy_process_group()


@contextmanager
def run_lock(env: DistEnv, run_dir: str | Path, force: bool = False) -> Iterator[None]:
    """Rank 0 holds the run directory's lock (runlock.py) for the whole job; when it is taken, every rank stops
    with its message (none is left waiting in a collective for a rank 0 that gave up)."""
    lock = runlock.RunLock(run_dir, force)

    def take() -> str:
        try:
            lock.acquire()
        except runlock.RunLocked as e:
            return str(e)
        except OSError as e:
            return f"cannot lock {lock.path}: {e.strerror or e}"
        return ""

    refused = env.from_main(take)
    if refused:
        raise runlock.RunLocked(refused)
    try:
        yield
    finally:
        if env.is_main:
            lock.release()


def _peer_error(e: BaseException) -> str:
    """The gist of a backend error: 'Read error [127.0.0.1]:30099: Connection reset by peer', without gloo's
    source location and advice."""
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h)(?::\d+)?\]\s*", "", (str(e).splitlines() or [""])[0])
    text = text.split(". ")[0].rstrip(".")[:160]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_peer_loss(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e).lower() for m in _PEER_LOST)


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    """`module` in DistributedDataParallel for this rank (the Trainer calls it; checkpoints keep the bare one)."""
    ddp: dict[str, Any] = {"device_ids": [env.device.index] if env.device.type == "cuda" else None}
    # BatchNorm running statistics are only read in eval mode (rank 0's sampling); spectral norm's vectors are a
    # function of the weights, equal on all ranks: no per-forward buffer broadcast (rank 0's are copied at init)
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    ddp["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = False
    return nn.parallel.DistributedDataParallel(module, **ddp)


def check_resume(env: DistEnv, ckpt: Path | None) -> None:
    """All ranks must resume from the same checkpoint (multi-node runs need the run dir on a shared filesystem)."""
    if not env.distributed:
        return
    name = ckpt.name if ckpt is not None else ""
    main_name = env.from_main(lambda: name)
    (mismatch,) = env.agree(name != main_name)
    if mismatch:
        raise DistributedError(
            f"rank {env.rank} sees checkpoint {name or 'none'}, rank 0 sees {main_name or 'none'}: every node must "
            "see the same run directory (put --out on a filesystem shared by all nodes)"
        )


class NullMetrics:
    """What ranks other than 0 log to: nothing."""

    def append(self, row: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def rows(self) -> list[dict[str, str]]:
        return []


# --- synchronised BatchNorm ----------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with a gradient: every rank's input feeds every rank's output, so the backward sums the
    output gradients over ranks too (what torch.distributed.nn's deprecated all_reduce did)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all ranks' shards, for CPU/gloo (torch's SyncBatchNorm is
    GPU-only). One all-reduce of (sum, sum of squares, count) in float64 per forward; the all-reduce is
    differentiable (_AllReduceSum), so the backward sums the statistics' gradients over ranks too."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xd = x.double()
        local = torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), xd.new_tensor([x.numel() // c])])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = (1, c, 1, 1)
        invstd = torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        y = (x - mean.to(x.dtype).view(shape)) * invstd
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm in `module` (in place) for a synchronised one, keeping the same Parameter and buffer
    objects (optimizers and the EMA copy still point at them): torch's SyncBatchNorm on CUDA, ours on CPU."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (nn.SyncBatchNorm, GlooSyncBatchNorm)
        ):
            cls = nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm
            if cls is GlooSyncBatchNorm and not isinstance(child, nn.BatchNorm2d):
                raise ConfigError(f"--sync-bn on CPU supports BatchNorm2d only, not {type(child).__name__}")
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module
