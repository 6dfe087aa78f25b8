"""GoPro motion deblurring: real blurred/sharp frame pairs in the GOPRO_Large layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ucdir.data.base import PairDataModule, scalar_vector
from ucdir.data.check import OnError
from ucdir.data.images import existing_dir, list_images, read_image
from ucdir.data.transforms import random_crop_pair, random_hflip, to_tensor
from ucdir.data.visits import VisitDataset
from ucdir.types import PairBatch

BlurKind = Literal["blur", "blur_gamma"]


def gopro_pairs(root: str | Path, split: str, blur: BlurKind) -> list[tuple[Path, Path]]:
    """(blurred, sharp) frame paths of `split` in ``root/split/<scene>/{blur,sharp}/*.png``.

    Raises:
        FileNotFoundError: `root`, the split, a scene's folders or a frame's sharp partner is
            missing (the message names ``data.root``).
        ValueError: the split holds no frames.
    """
    top = existing_dir(root, "data.root")
    split_dir = top / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"data.root: {top} has no {split}/ folder; expected the GOPRO_Large layout "
            f"{{train,test}}/<scene>/{{blur,blur_gamma,sharp}}/*.png"
        )
    pairs: list[tuple[Path, Path]] = []
    for scene in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        blurred = list_images(scene / blur, "data.root")
        for frame in blurred:
            sharp = scene / "sharp" / frame.relative_to(scene / blur)
            if not sharp.is_file():
                raise FileNotFoundError(f"data.root: {frame} has no sharp partner {sharp}")
            pairs.append((frame, sharp))
    if not pairs:
        raise ValueError(f"data.root: no scenes with {blur}/ and sharp/ frames under {split_dir}")
    return pairs


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
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        crop: int | None,
        rank: int = 0,
        crops_per_image: int = 1,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(crops_per_image, on_error, None, rank)
        if crop is None and crops_per_image != 1:
            raise ValueError(f"whole frames give one sample per pair, not {crops_per_image}")
        self.pairs = list(pairs)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, position: int) -> tuple[Tensor, Tensor]:
        """The decoded (lq, gt) frames of `position`, each (3, H, W)."""
        lq_path, gt_path = self.pairs[position]
        lq = to_tensor(read_image(lq_path, "data.root"))
        gt = to_tensor(read_image(gt_path, "data.root"))
        if lq.shape != gt.shape:
            raise ValueError(
                f"data.root: pair sizes differ: {lq_path} is {lq.shape[2]}x{lq.shape[1]}, "
                f"{gt_path} is {gt.shape[2]}x{gt.shape[1]}"
            )
        return lq, gt

    def sample(self, loaded: tuple[Tensor, Tensor], generator: torch.Generator) -> PairBatch:
        lq, gt = loaded
        if self.crop is not None:
            lq, gt = random_hflip(generator, *random_crop_pair(lq, gt, self.crop, generator))
        return PairBatch(lq, gt, scalar_vector({}, ()))


class GoProDataModule(PairDataModule):
    """GoPro deblurring pairs (GOPRO_Large: 2103 training, 1111 test frames at 1280×720).

    Training: random `crop`² crops of ``train/`` with horizontal flips (the official
    augmentation). Validation and test: the whole ``test/`` frames, batch 1 (limit validation
    with the trainer's ``limit_val_batches``). The task has no auxiliary scalars.

    Args:
        root: the GOPRO_Large folder holding ``train/`` and ``test/`` (``data.root``).
        blur: ``blur`` (linear average of sharp frames, what most papers use) or ``blur_gamma``
            (averaged in a gamma-corrected space).
        crop: training crop side in px.
        batch_size, num_workers, pin_memory, aux_scalars, check, on_error, crops_per_image:
            see `PairDataModule`.
    """

    task = "gopro"
    scalar_names = ()

    def __init__(
        self,
        root: str,
        blur: BlurKind = "blur",
        crop: int = 256,
        batch_size: int = 32,
        num_workers: int = 8,
        pin_memory: bool = True,
        aux_scalars: Sequence[str] = (),
        check: bool = True,
        on_error: OnError = "raise",
        crops_per_image: int = 1,
    ) -> None:
        super().__init__(
            batch_size,
            num_workers,
            pin_memory,
            aux_scalars,
            False,
            check,
            on_error,
            crops_per_image,
        )
        if blur not in ("blur", "blur_gamma"):
            raise ValueError(f"data.blur must be 'blur' or 'blur_gamma', got {blur!r}")
        if crop < 1:
            raise ValueError(f"data.crop must be positive, got {crop!r}")
        self.root = root
        self.blur: BlurKind = blur
        self.crop = crop

    def build(self, stage: str, rank: int) -> None:
        if stage == "fit":
            self.data_train = self._train_set(gopro_pairs(self.root, "train", self.blur), rank)
        self.data_val = self.data_test = PairedImageDataset(
            gopro_pairs(self.root, "test", self.blur), None, rank
        )

    def train_sources(self) -> list[tuple[Path, ...]]:
        return list(self._built_train().pairs)

    def keep_train(self, items: Sequence[int]) -> None:
        data = self._built_train()
        self.data_train = self._train_set([data.pairs[i] for i in items], data.rank)

    def _built_train(self) -> PairedImageDataset:
        if not isinstance(self.data_train, PairedImageDataset):
            raise RuntimeError("the train set of task 'gopro' is not built; call setup()")
        return self.data_train

    def _train_set(self, pairs: Sequence[tuple[Path, Path]], rank: int) -> PairedImageDataset:
        return PairedImageDataset(pairs, self.crop, rank, self.crops_per_image, self.on_error)
