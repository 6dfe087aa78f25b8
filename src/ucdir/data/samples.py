"""The embedded default task: JPEG quality-10 pairs from a few photos shipped in the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ucdir.data.folder import CleanImageDataModule, Degradation
from ucdir.data.images import list_images
from ucdir.data.jpeg import JPEGDegradation

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
"""`train/` (6 photos) and `val/` (1 photo held out); sources and licences in its README.md."""


class SamplesDataModule(CleanImageDataModule):
    """Clean images of a ``train/`` + ``val/`` folder (default: the embedded samples in
    ``ucdir/assets/samples``: runs offline, no dataset) and a degradation (default: JPEG
    quality 10).

    Training takes random `crop`² crops of the images in ``train/`` (each seen `repeats` times
    per epoch); validation and test use the held-out images in ``val/``, whole (batch 1) unless
    `eval_crop` is set.

    Args:
        root: a folder with the same ``train/`` + ``val/`` layout to use instead of the embedded
            samples (None = embedded).
        degradation, crop, eval_crop, eval_seed, repeats, cache: as in `CleanImageDataModule`.
        loader: the loader settings (`ucdir.data.base.PairDataModule`).
    """

    task = "samples"

    def __init__(
        self,
        root: str | None = None,
        degradation: Degradation | None = None,
        crop: int = 128,
        eval_crop: int | None = None,
        eval_seed: int = 0,
        repeats: int = 8,
        cache: bool = False,
        **loader: Any,
    ) -> None:
        folder = SAMPLES_DIR if root is None else Path(root)
        super().__init__(
            root=str(folder / "train"),
            degradation=JPEGDegradation() if degradation is None else degradation,
            crop=crop,
            eval_crop=eval_crop,
            val_root=str(folder / "val"),
            eval_seed=eval_seed,
            repeats=repeats,
            cache=cache,
            **{"batch_size": 4, "num_workers": 0, "pin_memory": False, **loader},
        )
        self.folder = folder

    def split(self) -> tuple[list[Path], list[Path]]:
        """(training, held-out) images: the files of ``train/`` and of ``val/``."""
        train = list_images(self.folder / "train", "data.root")
        return train, list_images(self.folder / "val", "data.root")
