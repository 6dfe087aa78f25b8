"""Per-sample random generators: fixed evaluation samples and decorrelated training workers.

Every random choice of a dataset (crop position, flip, JPEG quality, degradation parameters) is
drawn from one `torch.Generator` made here for that sample:

- evaluation (`seed` given): the generator depends only on (seed, index), so the validation set
  is identical on every run, with any number of workers or processes;
- training (`seed` None): the generator is seeded from torch's global RNG, which PyTorch's
  DataLoader seeds differently in every worker and every epoch from the main process's seed
  (so `lightning.seed_everything` makes runs reproducible), mixed with the process rank so that
  DDP ranks started from the same seed do not draw the same crops.

No `worker_init_fn` is needed: nothing here uses `random` or numpy's global RNG.
"""

from __future__ import annotations

import hashlib

import torch


def sample_generator(index: int, seed: int | None, rank: int = 0) -> torch.Generator:
    """The generator of sample `index`: from (seed, index) when `seed` is set, else fresh."""
    key = (seed, index) if seed is not None else (int(torch.randint(0, 2**62, (1,))), rank)
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
