"""JPEG restoration: clean images (any folder) compressed on the fly with real libjpeg."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ucdir.data.check import OnError
from ucdir.data.compression import jpeg_roundtrip
from ucdir.data.folder import CleanImageDataModule


def quality_range(quality: int | Sequence[int], key: str = "data.quality") -> tuple[int, int]:
    """(low, high) inclusive from a fixed quality `q` or a range `[low, high]`, each in [1, 100]."""
    bounds = (quality, quality) if isinstance(quality, int) else tuple(quality)
    if len(bounds) != 2 or not all(isinstance(q, int) for q in bounds):
        raise ValueError(f"{key} must be an integer or a [low, high] pair, got {quality!r}")
    low, high = bounds
    if not 1 <= low <= high <= 100:
        raise ValueError(f"{key} must lie in [1, 100] with low <= high, got {quality!r}")
    return low, high


@dataclass(frozen=True)
class JPEGDegradation:
    """RGB 4:2:0 JPEG at a quality drawn uniformly from [low, high] (inclusive) per sample.

    Emits the scalar ``quality`` = quality factor / 100.
    """

    low: int = 10
    high: int = 10

    def __call__(self, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        quality = self.low
        if self.high > self.low:
            quality = int(torch.randint(self.low, self.high + 1, (1,), generator=generator))
        return jpeg_roundtrip(gt, quality), {"quality": quality / 100}


class JPEGDataModule(CleanImageDataModule):
    """JPEG restoration pairs from a folder of clean images (paper: ImageNet, quality 10).

    Real libjpeg compression through Pillow (RGB, 4:2:0) of each training crop or evaluation
    image at `quality`, fixed or drawn per sample from a range (then pass ``quality`` in
    `aux_scalars` so the model knows it). Splits, crops and evaluation sets: see
    `CleanImageDataModule`; the defaults evaluate on DDRM-style 256×256 squares (the paper).

    Args:
        root: folder of clean training images (``data.root``).
        quality: JPEG quality factor, or a ``[low, high]`` range drawn per sample.
        crop, eval_crop, train_list, val_root, val_list, val_count, eval_seed, repeats:
            see `CleanImageDataModule`.
        batch_size, num_workers, pin_memory, aux_scalars: see `PairDataModule`; the only scalar
            is ``quality`` (quality factor / 100).
        cache: keep the decoded training images in memory (see `CleanImageDataset`).
        check, on_error, crops_per_image: see `PairDataModule`.
    """

    task = "jpeg"
    scalar_names = ("quality",)

    def __init__(
        self,
        root: str,
        quality: int | Sequence[int] = 10,
        crop: int = 256,
        eval_crop: int | None = 256,
        train_list: str | None = None,
        val_root: str | None = None,
        val_list: str | None = None,
        val_count: int = 16,
        eval_seed: int = 0,
        repeats: int = 1,
        batch_size: int = 32,
        num_workers: int = 8,
        pin_memory: bool = True,
        aux_scalars: Sequence[str] = (),
        cache: bool = False,
        check: bool = True,
        on_error: OnError = "raise",
        crops_per_image: int = 1,
    ) -> None:
        low, high = quality_range(quality)
        super().__init__(
            root,
            JPEGDegradation(low, high),
            crop,
            eval_crop,
            train_list,
            val_root,
            val_list,
            val_count,
            eval_seed,
            repeats,
            batch_size,
            num_workers,
            pin_memory,
            aux_scalars,
            cache,
            check,
            on_error,
            crops_per_image,
        )
        if high > low and "quality" not in self.aux_scalars:
            rank_zero_warn(
                f"data.quality={[low, high]} is a range but data.aux_scalars lacks 'quality': the "
                "model is not told each sample's quality (set task.aux_scalars=[quality])"
            )
