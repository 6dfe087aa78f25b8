"""JPEG restoration's degradation: real libjpeg (Pillow, RGB, 4:2:0) applied on the fly to clean
images (`ucdir.data.folder.CleanImageDataModule`; the paper: ImageNet, quality 10)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ucdir.data.compression import jpeg_roundtrip


def quality_range(quality: int | Sequence[int], key: str = "task.quality") -> tuple[int, int]:
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
    scalar_names: ClassVar[tuple[str, ...]] = ("quality",)

    @property
    def varying(self) -> tuple[str, ...]:
        """The scalars drawn per sample (the model should be told them)."""
        return ("quality",) if self.high > self.low else ()

    def __call__(self, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        quality = self.low
        if self.high > self.low:
            quality = int(torch.randint(self.low, self.high + 1, (1,), generator=generator))
        return jpeg_roundtrip(gt, quality), {"quality": quality / 100}


def jpeg_degradation(quality: int | Sequence[int] = 10) -> JPEGDegradation:
    """The task `jpeg`'s degradation (``data.degradation``): a fixed quality `q` or a
    ``[low, high]`` range drawn per sample (then pass ``quality`` in ``task.aux_scalars``)."""
    return JPEGDegradation(*quality_range(quality, "task.quality"))
