"""Aligned image pairs read from disk: a folder of inputs and a folder of targets (`task=paired`),
and the pair dataset that `gopro` shares.

``python -m ucdir.train task=paired data.lq=<inputs> data.gt=<targets>`` trains on any such
pair of folders; ``python -m ucdir.evaluate pretrained=<model> task=paired data.lq=… data.gt=…``
scores a model on them (a released test set, say). Files pair by their path relative to the
folder without the extension (``lq/0001.jpg`` ↔ ``gt/0001.png``, sub-folders allowed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ucdir.data.base import PairDataModule, scalar_vector
from ucdir.data.check import OnError
from ucdir.data.images import holdout_split, images_by_name, read_image
from ucdir.data.transforms import random_crop_pair, random_hflip, to_tensor
from ucdir.data.visits import VisitDataset
from ucdir.types import PairBatch

log = logging.getLogger(__name__)

Pair = tuple[Path, Path]


def folder_pairs(lq: str | Path, gt: str | Path, lq_key: str, gt_key: str) -> list[Pair]:
    """(input, target) files of two folders, paired by name, sorted by name.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: a folder holds no image, two files share a name, or an input has no target
            (the first few are named). Targets without an input are left out with a warning.
    """
    inputs = images_by_name(lq, lq_key, recursive=True)
    targets = images_by_name(gt, gt_key, recursive=True)
    lonely = sorted(set(inputs) - set(targets))
    if lonely:
        shown = ", ".join(lonely[:3]) + (", …" if len(lonely) > 3 else "")
        raise ValueError(
            f"{gt_key}: {len(lonely)} of the {len(inputs)} inputs under {lq} have no target of "
            f"the same name under {gt} ({shown})"
        )
    extra = len(targets) - len(inputs)
    if extra:
        log.warning("%s: %d targets under %s have no input; left out", lq_key, extra, gt)
    return [(inputs[name], targets[name]) for name in sorted(inputs)]


class PairedImageDataset(VisitDataset[tuple[Tensor, Tensor]]):
    """(lq, gt) read from two aligned image files; random crop + flip when `crop` is set.

    With `crops_per_image` k, each read of a pair gives k random crops (see
    `ucdir.data.visits`).

    Args:
        pairs: (lq file, gt file) paths.
        crop: training crop side in px (images smaller are reflect-padded), or None for whole
            frames (evaluation).
        rank: process rank, mixed into the training randomness.
        crops_per_image: random crops cut from each decoded pair (training only).
        on_error: ``raise`` or ``skip`` a pair that fails to decode (see `VisitDataset`).
        key: config key of the files, named in read errors.
    """

    item_lists = ("pairs",)

    def __init__(
        self,
        pairs: Sequence[Pair],
        crop: int | None,
        rank: int = 0,
        crops_per_image: int = 1,
        on_error: OnError = "raise",
        key: str = "data.root",
    ) -> None:
        super().__init__(crops_per_image, on_error, None, rank)
        if crop is None and crops_per_image != 1:
            raise ValueError(f"whole frames give one sample per pair, not {crops_per_image}")
        self.pairs = list(pairs)
        self.crop = crop
        self.key = key

    def __len__(self) -> int:
        return len(self.pairs)

    def sources(self) -> list[tuple[Path, ...]]:
        return list(self.pairs)

    def load(self, position: int) -> tuple[Tensor, Tensor]:
        """The decoded (lq, gt) frames of `position`, each (3, H, W)."""
        lq_path, gt_path = self.pairs[position]
        lq = to_tensor(read_image(lq_path, self.key))
        gt = to_tensor(read_image(gt_path, self.key))
        if lq.shape != gt.shape:
            raise ValueError(
                f"{self.key}: pair sizes differ: {lq_path} is {lq.shape[2]}x{lq.shape[1]}, "
                f"{gt_path} is {gt.shape[2]}x{gt.shape[1]}"
            )
        return lq, gt

    def sample(self, loaded: tuple[Tensor, Tensor], generator: torch.Generator) -> PairBatch:
        lq, gt = loaded
        if self.crop is not None:
            lq, gt = random_hflip(generator, *random_crop_pair(lq, gt, self.crop, generator))
        return PairBatch(lq, gt, scalar_vector({}, ()))


class PairedImageDataModule(PairDataModule):
    """Pairs of aligned images read from disk (no scalars): a folder of inputs and a folder of
    targets (`task=paired`), or a dataset layout that overrides `pairs` (`gopro`).

    Training: random `crop`² crops of the training pairs with horizontal flips. Validation:
    `val_lq` + `val_gt` when given, else `val_count` pairs of `lq` + `gt` held out by a fixed
    name hash (the same set on every run; they leave the training set). Test (what
    ``python -m ucdir.evaluate`` scores): `test_lq` + `test_gt` when given, else every pair of
    `lq` + `gt`. Evaluation uses whole images, batch 1.

    Args:
        lq: folder of degraded inputs (``data.lq``).
        gt: folder of targets (``data.gt``), paired with `lq` by name.
        val_lq, val_gt: optional validation folders (both or neither).
        val_count: pairs held out for validation when no validation folders are given.
        test_lq, test_gt: optional test folders (both or neither).
        crop: training crop side in px (smaller pairs are reflect-padded).
        loader: the loader settings (`PairDataModule`).
    """

    task = "paired"
    key = "data.lq"
    """The config key named in read errors."""

    def __init__(
        self,
        lq: str | None = None,
        gt: str | None = None,
        val_lq: str | None = None,
        val_gt: str | None = None,
        val_count: int = 16,
        test_lq: str | None = None,
        test_gt: str | None = None,
        crop: int = 256,
        **loader: Any,
    ) -> None:
        super().__init__(**loader)
        if crop < 1:
            raise ValueError(f"data.crop must be positive, got {crop!r}")
        for kind, (a, b) in {"val": (val_lq, val_gt), "test": (test_lq, test_gt)}.items():
            if (a is None) != (b is None):
                raise ValueError(f"data.{kind}_lq and data.{kind}_gt go together: give both")
        self.folders = {"": (lq, gt), "val_": (val_lq, val_gt), "test_": (test_lq, test_gt)}
        self.val_count = val_count
        self.crop = crop

    def pairs(self, split: str) -> list[Pair]:
        """The (input, target) files of `split`: ``train``, ``val`` or ``test``."""
        if split == "train":
            return self._holdout()[0]
        if split == "val":
            return self._folder("val_") if self.folders["val_"][0] else self._holdout()[1]
        return self._folder("test_") if self.folders["test_"][0] else self._folder("")

    def _folder(self, prefix: str) -> list[Pair]:
        lq, gt = self.folders[prefix]
        if lq is None or gt is None:
            raise ValueError(f"task {self.task!r} needs data.lq=<inputs> data.gt=<targets>")
        return folder_pairs(lq, gt, f"data.{prefix}lq", f"data.{prefix}gt")

    def _holdout(self) -> tuple[list[Pair], list[Pair]]:
        every = self._folder("")
        if self.folders["val_"][0] is not None:
            return every, []
        by_input = {lq: (lq, gt) for lq, gt in every}
        root = Path(str(self.folders[""][0])).expanduser()
        train, held = holdout_split(list(by_input), root, self.val_count, "data.val_count")
        return [by_input[f] for f in train], [by_input[f] for f in held]

    def build(self, stage: str, rank: int) -> None:
        if stage == "fit":
            self.data_train = PairedImageDataset(
                self.pairs("train"), self.crop, rank, self.crops_per_image, self.on_error, self.key
            )
        if stage in ("fit", "validate"):
            self.data_val = PairedImageDataset(self.pairs("val"), None, rank, key=self.key)
        if stage in ("test", "predict"):
            self.data_test = PairedImageDataset(self.pairs("test"), None, rank, key=self.key)
