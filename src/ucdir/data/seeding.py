"""Per-sample random generators: fixed evaluation samples and decorrelated training workers.

Every random choice of a dataset (crop position, flip, JPEG quality, degradation parameters) is
drawn from one `torch.Generator` made here for that sample:

- evaluation (`seed` given): the generator depends only on (seed, index), so the validation set
  is identical on every run, with any number of workers or processes;
- training (`seed` None): the index is a sample key from `ucdir.data.order.TrainingOrder`,
  already unique per (run seed, epoch, position); the generator depends only on that key, so a
  resumed run draws exactly what the uninterrupted one would have, with any number of workers.

No `worker_init_fn` is needed: nothing here uses `random`, numpy's or torch's global RNG.
"""

from __future__ import annotations

import hashlib

import torch


def sample_generator(index: int, seed: int | None, rank: int = 0) -> torch.Generator:
    """The generator of sample `index`: from (seed, index) for evaluation, from the training
    sample key `index` and the process `rank` when `seed` is None."""
    key = (seed, index) if seed is not None else ("train", index, rank)
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
