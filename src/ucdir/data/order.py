"""The order of training samples: a pure function of (run seed, epoch, rank), so a resumed run
draws exactly the samples the uninterrupted one would have drawn.

`TrainingOrder` shuffles the training set once per epoch from (seed, epoch), gives process r of N
every N-th sample of that permutation (all processes get the same count; DDP needs it) and yields
*sample keys* rather than bare positions: ``key = position + size · stream(seed, epoch)``. A
dataset reads position ``key % size`` and seeds that sample's randomness (crop, flip, degradation)
from the key (`ucdir.data.seeding.sample_generator`), so the same image gets new crops every epoch
and every run seed, while nothing depends on a worker's RNG state. The data position itself (how
many batches of this epoch were drawn) is checkpointed by torchdata's `StatefulDataLoader`, which
Lightning saves and restores with the loops.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

STREAMS = 2**31


def run_seed() -> int:
    """The run's seed as `lightning.seed_everything` recorded it (every DDP process sees it)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def mix(*parts: int) -> int:
    """A 63-bit integer hash of `parts` (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class TrainingOrder(Sampler[int]):
    """Sample keys for one process: a fresh permutation every epoch, split over the processes.

    Args:
        size: number of training samples.
        seed: the run seed.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"the training set is empty (size {size!r})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before every training epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(mix(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator)
        mine = order[self.rank : len(self) * self.world_size : self.world_size].tolist()
        offset = self.size * (mix(self.seed, self.epoch, -1) % STREAMS)
        return iter(position + offset for position in mine)


class ResumableLoader(StatefulDataLoader):
    """torchdata's `StatefulDataLoader` over a `TrainingOrder` whose state also holds the order's
    epoch. Lightning creates the loader's iterator when a resumed fit starts, before it calls
    `set_epoch`, so the epoch must come back with the position. A state saved after the last
    batch of an epoch resumes at the start of the next one (Lightning counts that epoch as
    finished; an exhausted position would otherwise swallow the next epoch)."""

    def state_dict(self) -> dict:
        # (Lightning swaps in a SequentialSampler for trainer.overfit_batches: no epoch there)
        return {**super().state_dict(), "order_epoch": getattr(self.sampler, "epoch", 0)}

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        epoch = state.pop("order_epoch", 0)
        snapshot = state.get("_snapshot", {}).get("_main_snapshot", state)
        complete = snapshot.get("_sampler_iter_yielded", 0) >= len(self)
        if isinstance(self.sampler, TrainingOrder):
            # the epoch was complete: the next one, whole
            self.sampler.set_epoch(epoch + 1 if complete else epoch)
        if not complete:
            super().load_state_dict(state)


def seed_batch(batch_number: int, rank: int) -> None:
    """Seeds every global RNG (torch on CPU and CUDA, numpy, random) from (run seed, the batch's
    number in the run, rank) before a training batch: dropout and the objective's noise then
    depend only on the batch's place in the run, so a resumed run continues exactly, with
    nothing to store."""
    seed = mix(run_seed(), batch_number, rank)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
