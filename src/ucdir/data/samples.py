"""The embedded default task: JPEG quality-10 pairs from a few photos shipped in the package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ucdir.data.check import OnError
from ucdir.data.images import list_images
from ucdir.data.jpeg import JPEGDataModule

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
"""`train/` (6 photos) and `val/` (1 photo held out); sources and licences in its README.md."""


class SamplesDataModule(JPEGDataModule):
    """JPEG restoration on the sample photos in ``ucdir/assets/samples``: runs offline, no dataset.

    Training takes random `crop`² crops of the 6 images in ``train/`` (each seen `repeats` times
    per epoch); validation and test use the held-out image in ``val/``, whole (batch 1) unless
    `eval_crop` is set.

    Args:
        root: a folder with the same ``train/`` + ``val/`` layout to use instead of the embedded
            samples (None = embedded).
        quality, crop, eval_crop, eval_seed, repeats, batch_size, num_workers, pin_memory,
            aux_scalars, cache, check, on_error, crops_per_image: as in `JPEGDataModule`.
    """

    task = "samples"

    def __init__(
        self,
        root: str | None = None,
        quality: int | Sequence[int] = 10,
        crop: int = 128,
        eval_crop: int | None = None,
        eval_seed: int = 0,
        repeats: int = 8,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        aux_scalars: Sequence[str] = (),
        cache: bool = False,
        check: bool = True,
        on_error: OnError = "raise",
        crops_per_image: int = 1,
    ) -> None:
        folder = SAMPLES_DIR if root is None else Path(root)
        super().__init__(
            root=str(folder / "train"),
            quality=quality,
            crop=crop,
            eval_crop=eval_crop,
            val_root=str(folder / "val"),
            eval_seed=eval_seed,
            repeats=repeats,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            aux_scalars=aux_scalars,
            cache=cache,
            check=check,
            on_error=on_error,
            crops_per_image=crops_per_image,
        )
        self.folder = folder

    def split(self) -> tuple[list[Path], list[Path]]:
        """(training, held-out) images: the files of ``train/`` and of ``val/``."""
        train = list_images(self.folder / "train", "data.root")
        return train, list_images(self.folder / "val", "data.root")
