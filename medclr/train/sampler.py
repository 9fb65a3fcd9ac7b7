"""A resumable, distributed batch sampler: every rank takes its slice of the same global batches.

Epoch ``e`` shuffles the rows with ``torch.randperm(n, generator seeded with seed + e)`` and cuts the permutation
into global batches of G rows (an incomplete last batch is dropped, so every step sees G rows). Rank r of R takes
rows ``[r * G/R, (r + 1) * G/R)`` of each global batch. Hence:

* one process with ``G`` and two processes with ``G/2`` each see exactly the same global batches (the
  2-process torchrun test compares their first-step loss), and
* the position in the data is just ``(epoch, batches done in this epoch)``: a checkpoint stores these two
  integers and a resumed run continues with the next batch (``start``), whatever the number of DataLoader
  workers or how far they had prefetched.

Example: n = 10, G = 4, R = 2 -> 2 global batches per epoch; rank 0 gets rows perm[0:2] then perm[4:6].
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's list of dataset indices for each global batch; see the module docstring."""

    def __init__(self, n: int, global_batch: int, *, seed: int, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        if global_batch % world:
            raise ValueError(f"the global batch size {global_batch} is not divisible by {world} processes")
        if n < global_batch:
            raise ValueError(f"the split has {n} rows, fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.seed, self.shuffle = n, global_batch, seed, shuffle
        self.rank, self.world, self.local = rank, world, global_batch // world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` (0 = from the beginning)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.global_batch - self.start

    def permutation(self) -> torch.Tensor:
        """``[n]`` the row order of the current epoch (the same on every rank)."""
        if not self.shuffle:
            return torch.arange(self.n)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation()
        for b in range(self.start, self.n // self.global_batch):
            lo = b * self.global_batch + self.rank * self.local
            yield perm[lo : lo + self.local].tolist()
