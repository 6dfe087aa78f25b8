"""Samples drawn in visits: one read of a file (or of a pair of files) gives several samples, and
a file that fails to decode is either reported or skipped.

Decoding a 1276×850 PNG to cut one 64² crop out of it dominated a CPU training step. With
``data.crops_per_image=k`` each *visit* (one sample key of `ucdir.data.order.TrainingOrder`,
one decode) gives k samples: the loader draws batch / k keys per batch, and the dataset's
`__getitems__` returns the k samples of each visit, so the batch still holds `batch_size`
samples, k from each image, while an image is decoded once for every k samples. The grouping
is in what one key returns, not in the order of the keys, so the order's shuffling cannot
undo it, and the samples depend on the keys alone: the same keys give the same samples with
any number of workers. All k samples draw their randomness, one after another, from the one
generator of the visit's key (`ucdir.data.seeding.sample_generator`); the first is exactly the
sample that ``k=1`` gives for that key.
"""

from __future__ import annotations

import copy
import logging
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import torch
from torch.utils.data import Dataset, get_worker_info

from ucdir.data.check import OnError, check_on_error
from ucdir.data.seeding import sample_generator
from ucdir.types import PairBatch

log = logging.getLogger(__name__)

Loaded = TypeVar("Loaded")

READ_ERRORS = (ValueError, OSError)
"""What the readers raise for a file that cannot be decoded (`ucdir.data.images.read_image`)."""


class SkipCounter:
    """A count shared by a process and its DataLoader workers: each process adds to its own
    slot of one shared-memory tensor (no lock needed), the total sums the slots."""

    SLOTS = 256

    def __init__(self) -> None:
        self._slots = torch.zeros(self.SLOTS, dtype=torch.int64).share_memory_()

    def add(self, n: int) -> int:
        """Adds `n` for this process (main process or worker); returns the new total."""
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (self.SLOTS - 1)
        self._slots[slot] += n
        return self.total

    @property
    def total(self) -> int:
        return int(self._slots.sum())


Items = TypeVar("Items", bound="FileItems")


class FileItems:
    """A dataset whose items read named files: `sources` lists them for the check before
    fitting (`ucdir.data.check`) and `subset` drops the bad ones.

    A subclass names its per-item lists in `item_lists` (filtered together by `subset`) and
    says which files an item reads in `sources`.
    """

    item_lists: ClassVar[tuple[str, ...]]

    @abstractmethod
    def sources(self) -> list[tuple[Path, ...]]:
        """The files each item reads, in item order."""

    def subset(self: Items, items: Sequence[int]) -> Items:
        """A copy holding only `items` (in that order), with nothing remembered of this one."""
        clone = copy.copy(self)
        for name in self.item_lists:
            every = getattr(self, name)
            setattr(clone, name, [every[i] for i in items])
        clone.forget()
        return clone

    def forget(self) -> None:
        """Drop what was remembered per item (a subset's positions differ)."""


class VisitDataset(FileItems, Dataset[PairBatch], Generic[Loaded]):
    """Base of the datasets that decode files: a key visits position ``key % len(self)``,
    reads it once (`load`) and cuts `crops_per_image` samples from it (`sample`).

    A position whose file fails to decode (`load` raises ValueError or OSError) is reported
    (``on_error="raise"``: the error names the file and the switch) or skipped
    (``on_error="skip"``): the visit then reads the next readable position, so the samples
    stay a function of the keys; the skipped samples are counted in `skipped` (shared with the
    loader's workers) and logged as warnings. A process remembers the positions it found
    unreadable and does not decode them again.

    Args:
        crops_per_image: samples per visit (k); 1 for evaluation.
        on_error: ``raise`` or ``skip`` (training only; evaluation raises).
        seed: evaluation seed, or None for training keys (see `sample_generator`).
        rank: process rank, mixed into training randomness.
    """

    def __init__(
        self, crops_per_image: int, on_error: OnError, seed: int | None, rank: int
    ) -> None:
        if crops_per_image < 1:
            raise ValueError(f"data.crops_per_image must be positive, got {crops_per_image!r}")
        self.crops_per_image = crops_per_image
        self.on_error = check_on_error(on_error)
        self.seed = seed
        self.rank = rank
        self.forget()

    def forget(self) -> None:
        self.skipped = SkipCounter()
        self._unreadable: set[int] = set()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, position: int) -> Loaded:
        """The decoded data of `position`; raises ValueError or OSError when unreadable."""

    @abstractmethod
    def sample(self, loaded: Loaded, generator: torch.Generator) -> PairBatch:
        """One sample cut from `loaded`, its randomness drawn from `generator`."""

    def visit(self, key: int) -> list[PairBatch]:
        """The `crops_per_image` samples of key `key`, from one read."""
        loaded = self._load_readable(key % len(self))
        generator = sample_generator(key, self.seed, self.rank)
        return [self.sample(loaded, generator) for _ in range(self.crops_per_image)]

    def __getitem__(self, key: int) -> PairBatch:
        """The first sample of the visit of `key` (all of them: `visit`)."""
        return self.visit(key)[0]

    def __getitems__(self, keys: Sequence[int]) -> list[PairBatch]:
        """What a loader's batch of `keys` holds: every sample of each key's visit, in order."""
        return [sample for key in keys for sample in self.visit(key)]

    def _load_readable(self, position: int) -> Loaded:
        size = len(self)
        for step in range(size):
            candidate = (position + step) % size
            if candidate in self._unreadable:
                continue
            try:
                loaded = self.load(candidate)
            except READ_ERRORS as err:
                if self.on_error == "raise":
                    raise _with_hint(err) from err
                self._unreadable.add(candidate)
                log.warning("skipping an unreadable training file (data.on_error=skip): %s", err)
                continue
            if step:
                total = self.skipped.add(self.crops_per_image)
                log.warning(
                    "%d training samples skipped so far (data.on_error=skip): position %d "
                    "read position %d instead",
                    total,
                    position,
                    candidate,
                )
            return loaded
        raise ValueError(f"none of the {size} training files can be read (data.on_error=skip)")


def _with_hint(err: Exception) -> Exception:
    """`err` again (same type where it can be rebuilt from a message), naming the switch."""
    message = f"{err} (data.on_error=skip skips unreadable training files)"
    try:
        return type(err)(message)
    except TypeError:  # an error type that needs more than a message
        return ValueError(message)
