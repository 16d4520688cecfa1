"""A resumable, distributed-aware shuffling sampler.

Epoch e visits a permutation seeded by (seed, e), split across ranks. After a restart the trainer
tells the sampler how many batches of the current epoch were already consumed, and it skips them,
so a preempted job restarted with the same command sees the same data order as one that never
stopped.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, dataset_len: int, *, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, batch_size: int = 1):
        self.dataset_len, self.seed, self.shuffle = dataset_len, seed, shuffle
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, batches: int) -> None:
        """Skip the first `batches` batches of the next pass (used once, after a restart)."""
        self.skip_batches = batches

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        per_rank = self.dataset_len // self.world_size
        return order[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __iter__(self):
        indices = self._indices()[self.skip_batches * self.batch_size:]
        self.skip_batches = 0
        return iter(indices)

    def __len__(self) -> int:
        return self.dataset_len // self.world_size - self.skip_batches * self.batch_size


class ValidationSampler(ResumableSampler):
    """One seeded permutation of the validation split, the same at every validation: with
    `trainer.limit_val_batches` the metrics then read a fixed random sample of every class, not
    the first items of a split stored class by class (the genomes, species after species)."""

    def __init__(self, dataset_len: int, *, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(dataset_len, seed=seed, shuffle=True, rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int) -> None:
        """The order does not change between validations."""
