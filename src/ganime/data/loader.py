"""Batches from the uint8 cache: a seeded order per epoch, resumable at any step, shardable across ranks."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ganime.data.dataset import ImageDataset
from ganime.errors import DataError

_FLIP_STREAM = 1  # the flips' PCG64 key is (seed, epoch, step, this): never the key of an epoch's order


class BatchLoader:
    """Yields (images in [-1, 1] NCHW float, labels or None) for (epoch, step) positions.

    The order of epoch `e` is a permutation drawn from numpy's PCG64 seeded with (seed, e), so any position
    can be rebuilt from (epoch, step) alone: resuming needs no loader state. With `world_size` > 1 every
    rank takes its own contiguous slice of each global batch (same global order as one process).

    With `hflip`, each image of a batch is mirrored left-right with probability 1/2, drawn from PCG64 seeded with
    (seed, epoch, step) over the global batch: the flips, too, are rebuilt from the position alone, and every rank
    flips its slice as one process would.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        hflip: bool = False,
    ) -> None:
        if len(dataset) < batch_size:
            raise DataError(
                f"the data set has {len(dataset)} images, fewer than the batch size {batch_size}; "
                "use a smaller --batch-size or more images"
            )
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} must be divisible by the number of processes {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.hflip = hflip
        self.steps_per_epoch = len(dataset) // batch_size  # drop the last partial batch, like BN-friendly loaders
        self._order_epoch = -1
        self._order: np.ndarray | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of image indices used in `epoch`."""
        if epoch != self._order_epoch:
            self._order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(len(self.dataset))
            self._order_epoch = epoch
        assert self._order is not None
        return self._order

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's image indices for batch `step` of `epoch`."""
        return self._rank_slice(self.order(epoch)[step * self.batch_size : (step + 1) * self.batch_size])

    def _rank_slice(self, glob: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch's per-image array."""
        local = self.batch_size // self.world_size
        return glob[self.rank * local : (self.rank + 1) * local]

    def flips(self, epoch: int, step: int) -> np.ndarray:
        """Which of this rank's images in batch `step` of `epoch` are mirrored (all False without hflip)."""
        if not self.hflip:
            return np.zeros(self.batch_size // self.world_size, dtype=bool)
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch, step, _FLIP_STREAM]))
        return self._rank_slice(rng.random(self.batch_size) < 0.5)

    def batch(self, epoch: int, step: int) -> tuple[Tensor, Tensor | None]:
        """Images as float in [-1, 1], NCHW, on the loader's device; labels as int64 or None."""
        wanted = self.indices(epoch, step)
        idx = np.sort(wanted)  # sorted reads are faster on a memory map
        perm = np.argsort(np.argsort(wanted))  # back to the drawn order
        raw = self.dataset.images[idx][perm]
        flip = self.flips(epoch, step)
        if flip.any():
            raw[flip] = raw[flip, :, ::-1]  # NHWC: mirror the width axis
        raw = np.ascontiguousarray(raw)
        x = torch.from_numpy(raw)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        labels = None
        if self.dataset.labels is not None:
            labels = torch.from_numpy(self.dataset.labels[idx][perm]).to(self.device)
        return x, labels
