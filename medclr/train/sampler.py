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

Training reads :class:`EpochBatches`: the same batches, epoch after epoch without end, each index paired with its
epoch (``(epoch, i)``, which seeds the row's augmentation in :class:`~medclr.data.dataset.StudyDataset`). So one
DataLoader, and one set of worker processes, serves the whole run: a DataLoader per epoch would start its
workers again at every epoch boundary, which on a small split (one batch per epoch) is every step.
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

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def permutation(self) -> torch.Tensor:
        """``[n]`` the row order of the current epoch (the same on every rank)."""
        if not self.shuffle:
            return torch.arange(self.n)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation()
        for b in range(self.start, self.batches_per_epoch):
            lo = b * self.global_batch + self.rank * self.local
            yield perm[lo : lo + self.local].tolist()


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """Endless: this rank's batches of ``epoch`` from its batch ``start``, then of every later epoch, each index
    tagged with its epoch: ``[(epoch, i), ...]``. The position after ``k`` batches is plain arithmetic on
    ``sampler.batches_per_epoch``, so the consumer tracks it without asking the sampler."""

    def __init__(self, sampler: GlobalBatchSampler, epoch: int = 0, start: int = 0) -> None:
        self.sampler, self.epoch, self.start = sampler, epoch, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.start
        while True:
            self.sampler.set_epoch(epoch, start)
            for batch in self.sampler:
                yield [(epoch, i) for i in batch]
            epoch, start = epoch + 1, 0
