"""The shell shared by every task's DataModule: global batch size, loaders, auxiliary scalars."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ucdir.data.check import (
    BadDataError,
    OnError,
    bad_data_error,
    check_files,
    check_on_error,
    describe,
)
from ucdir.data.order import ResumableLoader, TrainingOrder, run_seed
from ucdir.data.visits import FileItems
from ucdir.types import PairBatch

log = logging.getLogger(__name__)


def check_scalar_names(
    names: Sequence[str], available: Sequence[str], task: str
) -> tuple[str, ...]:
    """`names` as a tuple after checking each is a scalar that `task` can emit, without repeats."""
    names = tuple(names)
    for name in names:
        if name not in available:
            choices = ", ".join(available) if available else "none"
            raise ValueError(
                f"data.aux_scalars: task {task!r} has no auxiliary scalar {name!r} "
                f"(available: {choices})"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"data.aux_scalars: repeated name in {list(names)}")
    return names


def scalar_vector(values: Mapping[str, float], names: Sequence[str]) -> Tensor:
    """The (K,) float32 vector of the scalars `names`, in that order (K = 0 gives an empty one)."""
    return torch.tensor([float(values[name]) for name in names], dtype=torch.float32)


class EvalShards(DistributedSampler[int]):
    """Evaluation samples split over N processes: process r gets samples r, r + N, r + 2N, ...;
    the last round is padded with sample 0 so that every process runs the same number of batches
    (DDP needs it). Position p of process r is sample r + N·p; positions ≥ the dataset's length
    are padding, which `UCDIRLitModule` does not score (Lightning's default sampler pads with
    real samples that would be counted twice)."""

    def __init__(self, dataset: Dataset[PairBatch], num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.size = len(dataset)  # type: ignore[arg-type]
        self.num_samples = -(-self.size // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        positions = range(self.rank, self.total_size, self.num_replicas)
        return iter(i if i < self.size else 0 for i in positions)

    def __len__(self) -> int:
        return self.num_samples


class PairDataModule(L.LightningDataModule):
    """Base of the task DataModules; every loader yields `PairBatch(lq, gt, scalars)`.

    A task is a source of pairs (clean images + a degradation, `ucdir.data.folder`; paired
    folders, `ucdir.data.paired`; GoPro, `ucdir.data.gopro`; SID raw files, `ucdir.data.sid`)
    inside this shell, which owns everything else: the loader settings (one config node,
    ``configs/data/loader.yaml``, the same keys for every task), the global batch, the file
    check and the training order. A subclass builds its datasets in `build`; a training
    dataset that can name its files and drop items gets the
    check for free (`ucdir.data.visits.FileItems`).

    `batch_size` is the global batch: `setup` divides it by the trainer's world size (the paper's
    32 is 4 per GPU on 8 GPUs). Training loaders are torchdata `StatefulDataLoader`s over a
    `TrainingOrder` (a permutation per epoch from the run seed, split over the processes; drops
    the last incomplete batch), so a checkpoint holds the data position and a resumed run draws
    exactly the samples the uninterrupted one would have (the trainer keeps
    ``use_distributed_sampler=false``: the order splits itself). Evaluation loaders use batch 1
    for full-size images and the per-device batch for fixed-size crops.

    Before fitting, `setup` checks every training file (`ucdir.data.check`: headers and
    structure, no decoding) and stops with one error listing every bad file, or leaves them out
    with a warning when ``on_error="skip"`` (which also skips files that fail to decode later,
    `ucdir.data.visits`).

    Args (the loader settings, keyword only):
        task: the task's name in messages (``task.name``; default: the class's `task`).
        batch_size: global batch size (all processes together), in samples.
        num_workers: DataLoader worker processes per process.
        pin_memory: pin host memory (faster copies to a GPU).
        aux_scalars: names of the auxiliary scalars to emit in `PairBatch.scalars`, in order;
            each is normalised to about [0, 1] (see the source's `scalar_names`).
        check: check every training file before fitting (``data.check``).
        on_error: ``raise``: a bad training file stops the run with an error naming it;
            ``skip``: it is left out (found by the check) or skipped when it fails to decode,
            and counted (``data.on_error``).
        crops_per_image: training samples cut from each decoded image or pair (k); a batch
            then holds batch / k images, k crops each, and an epoch, which still visits every
            training item once, holds k times the samples (``data.crops_per_image``).
    Set by the subclass:
        scalar_names: the scalars the source can emit.
        eval_fixed_size: evaluation samples all have one size, so they can be batched.
    """

    task: str = "pairs"

    def __init__(
        self,
        *,
        scalar_names: Sequence[str] = (),
        eval_fixed_size: bool = False,
        task: str | None = None,
        batch_size: int = 32,
        num_workers: int = 8,
        pin_memory: bool = True,
        aux_scalars: Sequence[str] = (),
        check: bool = True,
        on_error: OnError = "raise",
        crops_per_image: int = 1,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {batch_size!r}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers!r}")
        if crops_per_image < 1:
            raise ValueError(f"data.crops_per_image must be positive, got {crops_per_image!r}")
        if task is not None:
            self.task = task
        self.scalar_names = tuple(scalar_names)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.aux_scalars = check_scalar_names(aux_scalars, self.scalar_names, self.task)
        self.eval_fixed_size = eval_fixed_size
        self.check = check
        self.on_error = check_on_error(on_error)
        self.crops_per_image = crops_per_image
        self.batch_size_per_device = batch_size
        self.data_train: Dataset[PairBatch] | None = None
        self.data_val: Dataset[PairBatch] | None = None
        self.data_test: Dataset[PairBatch] | None = None

    @abstractmethod
    def build(self, stage: str, rank: int) -> None:
        """Create the datasets `stage` needs (`data_train`, `data_val`, `data_test`)."""

    def train_sources(self) -> list[tuple[Path, ...]]:
        """The files each training item reads, in item order (checked before fitting)."""
        return self._train_items().sources()

    def keep_train(self, items: Sequence[int]) -> None:
        """Keep only the training items `items` (the others are bad)."""
        self.data_train = self._train_items().subset(items)  # type: ignore[assignment]

    def _train_items(self) -> FileItems:
        if not isinstance(self.data_train, FileItems):
            raise RuntimeError(f"the train set of task {self.task!r} is not built; call setup()")
        return self.data_train

    def setup(self, stage: str) -> None:
        """Split the global batch over the processes and build the datasets of `stage`; before
        fitting, check the training files."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(
                f"data.batch_size={self.batch_size} is the global batch and must be divisible by "
                f"the number of processes ({world})"
            )
        self.batch_size_per_device = self.batch_size // world
        if self.batch_size_per_device % self.crops_per_image:
            raise ValueError(
                f"data.batch_size: {self.batch_size_per_device} per process is not a multiple "
                f"of data.crops_per_image={self.crops_per_image}"
            )
        self.build(stage, self.trainer.global_rank if self.trainer is not None else 0)
        if stage == "fit" and self.data_train is not None:
            if self.check:
                self._check_train()
            n = len(self.data_train)  # type: ignore[arg-type]
            visits = self.batch_size_per_device // self.crops_per_image
            if n < visits:
                per_batch = f"{self.batch_size_per_device} per process"
                if self.crops_per_image > 1:
                    per_batch = f"{visits} images per batch per process (crops_per_image > 1)"
                raise ValueError(
                    f"data.batch_size: {per_batch} is more than the {n} training samples of "
                    f"task {self.task!r}; lower data.batch_size or add data"
                )

    def _check_train(self) -> None:
        """Every training file checked at once; bad ones raise, or are dropped when skipping."""
        items = self.train_sources()
        if not items:
            return
        result = check_files(items, workers=max(self.num_workers, 1))
        if not result.bad_files:
            return
        if self.on_error == "raise":
            raise bad_data_error(result.bad_files, result.checked, self.task)
        bad = set(result.bad_items)
        kept = [i for i in range(len(items)) if i not in bad]
        if not kept:
            summary = describe(result.bad_files, result.checked, self.task)
            raise BadDataError(f"{summary}\nno training data is left (data.on_error=skip)")
        log.warning(
            "%s\n%d training items left out (data.on_error=skip)",
            describe(result.bad_files, result.checked, self.task),
            len(bad),
        )
        self.keep_train(kept)

    def train_dataloader(self) -> DataLoader[PairBatch]:
        visits = self.batch_size_per_device // self.crops_per_image  # k samples each
        return self._loader(self.data_train, "train", visits, train=True)

    def val_dataloader(self) -> DataLoader[PairBatch]:
        return self._loader(self.data_val, "validation", self._eval_batch(), train=False)

    def test_dataloader(self) -> DataLoader[PairBatch]:
        return self._loader(self.data_test, "test", self._eval_batch(), train=False)

    def _eval_batch(self) -> int:
        return self.batch_size_per_device if self.eval_fixed_size else 1

    def _loader(
        self, data: Dataset[PairBatch] | None, name: str, batch_size: int, train: bool
    ) -> DataLoader[PairBatch]:
        if data is None:
            raise RuntimeError(f"the {name} set of task {self.task!r} is not built; call setup()")
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        common: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }
        if train:
            order = TrainingOrder(len(data), run_seed(), rank, world)  # type: ignore[arg-type]
            return ResumableLoader(data, sampler=order, drop_last=True, **common)
        shards = EvalShards(data, world, rank) if world > 1 else None
        return DataLoader(data, sampler=shards, **common)
