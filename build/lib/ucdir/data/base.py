"""The shell shared by every task's DataModule: global batch size, loaders, auxiliary scalars."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ucdir.types import PairBatch


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

    `batch_size` is the global batch: `setup` divides it by the trainer's world size (the paper's
    32 is 4 per GPU on 8 GPUs). Training loaders shuffle and drop the last incomplete batch;
    Lightning swaps in a `DistributedSampler` under DDP and reshuffles it every epoch. Evaluation
    loaders use batch 1 for full-size images and the per-device batch for fixed-size crops.

    Subclasses set `task` and `scalar_names` and build their datasets in `build`.

    Args:
        batch_size: global batch size (all processes together).
        num_workers: DataLoader worker processes per process.
        pin_memory: pin host memory (faster copies to a GPU).
        aux_scalars: names of the auxiliary scalars to emit in `PairBatch.scalars`, in order;
            each is normalised to about [0, 1] (see the task's `scalar_names`).
        eval_fixed_size: evaluation samples all have one size, so they can be batched.
    """

    task: ClassVar[str]
    scalar_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        aux_scalars: Sequence[str],
        eval_fixed_size: bool,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {batch_size!r}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers!r}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.aux_scalars = check_scalar_names(aux_scalars, self.scalar_names, self.task)
        self.eval_fixed_size = eval_fixed_size
        self.batch_size_per_device = batch_size
        self.data_train: Dataset[PairBatch] | None = None
        self.data_val: Dataset[PairBatch] | None = None
        self.data_test: Dataset[PairBatch] | None = None

    @abstractmethod
    def build(self, stage: str, rank: int) -> None:
        """Create the datasets `stage` needs (`data_train`, `data_val`, `data_test`)."""

    def setup(self, stage: str) -> None:
        """Split the global batch over the processes and build the datasets of `stage`."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(
                f"data.batch_size={self.batch_size} is the global batch and must be divisible by "
                f"the number of processes ({world})"
            )
        self.batch_size_per_device = self.batch_size // world
        self.build(stage, self.trainer.global_rank if self.trainer is not None else 0)
        if stage == "fit" and self.data_train is not None:
            n = len(self.data_train)  # type: ignore[arg-type]
            if n < self.batch_size_per_device:
                raise ValueError(
                    f"data.batch_size: {self.batch_size_per_device} per process is more than the "
                    f"{n} training samples of task {self.task!r}; lower data.batch_size or add data"
                )

    def train_dataloader(self) -> DataLoader[PairBatch]:
        return self._loader(self.data_train, "train", self.batch_size_per_device, train=True)

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
        sampler = None
        if not train and self.trainer is not None and self.trainer.world_size > 1:
            sampler = EvalShards(data, self.trainer.world_size, self.trainer.global_rank)
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
