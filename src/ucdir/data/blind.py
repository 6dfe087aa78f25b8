"""Blind restoration: clean images degraded on the fly by the second-order model (DiffBIR)."""

from __future__ import annotations

from collections.abc import Sequence

from ucdir.data.check import OnError
from ucdir.data.degradations import SecondOrderDegradation
from ucdir.data.folder import CleanImageDataModule


class BlindDataModule(CleanImageDataModule):
    """Blind-restoration pairs: Real-ESRGAN/DiffBIR second-order degradations of clean images.

    The degradation of a training crop is drawn afresh every epoch; that of an evaluation image
    is fixed by (`eval_seed`, index), so the validation set is the same on every run. Splits,
    crops and evaluation sets: see `CleanImageDataModule`.

    Args:
        root: folder of clean training images (``data.root``).
        degradation: the degradation model and its ranges (``data.degradation``).
        crop, eval_crop, train_list, val_root, val_list, val_count, eval_seed, repeats, cache:
            see `CleanImageDataModule`.
        batch_size, num_workers, pin_memory, aux_scalars: see `PairDataModule`; the scalars
            are `SecondOrderDegradation.scalar_names`.
        check, on_error, crops_per_image: see `PairDataModule`.
    """

    task = "blind"
    scalar_names = SecondOrderDegradation.scalar_names

    def __init__(
        self,
        root: str,
        degradation: SecondOrderDegradation | None = None,
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
        super().__init__(
            root,
            degradation if degradation is not None else SecondOrderDegradation(),
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
