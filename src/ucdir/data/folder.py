"""Pairs made on the fly from clean images: read, crop, then degrade (jpeg, blind, samples).

The degradation is a unit chosen in config (``data.degradation``): any callable of the
`Degradation` protocol, with the `scalar_names` it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ucdir.data.base import PairDataModule, scalar_vector
from ucdir.data.check import OnError
from ucdir.data.images import holdout_split, list_images, read_file_list, read_image
from ucdir.data.transforms import center_square, random_crop, random_hflip, to_tensor
from ucdir.data.visits import VisitDataset
from ucdir.types import PairBatch

Geometry = Literal["crop", "square", "full"]


class Degradation(Protocol):
    """Turns a clean image into its degraded version and reports the scalars of the draw."""

    def __call__(self, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """(3, H, W) in [0, 1] -> (lq (3, H, W) in [0, 1], {scalar name: value in about [0, 1]})."""
        ...


class CleanImageDataset(VisitDataset[Tensor]):
    """(lq, gt, scalars) samples from clean images and a degradation applied on the fly.

    Position p reads file ``p % len(files)``; with `crops_per_image` k, each read gives k
    samples (see `ucdir.data.visits`; the loader then draws batch / k keys per batch).

    Args:
        files: the clean images.
        degradation: makes `lq` from `gt`; draws its randomness from the sample's generator.
        aux_scalars: names of the scalars to return, in order.
        geometry: ``crop`` = random `size`² crop + horizontal flip (training; images smaller than
            the crop are first resized up, short side = `size`); ``square`` = the centred square
            resized to `size`² (DDRM evaluation protocol); ``full`` = the whole image.
        size: crop or square side in px (ignored for ``full``).
        seed: fixes every sample's randomness by (seed, index) — evaluation; None draws fresh
            randomness every epoch — training (see `ucdir.data.seeding`).
        rank: process rank, mixed into training randomness.
        key: config key of the images' folder, named in read errors.
        repeats: the dataset lists every file this many times (longer epochs for tiny folders).
        cache: keep each decoded image in memory (16-bit, exact for 8- and 16-bit files) after
            its first read, so later crops of it skip the decode (each loader worker holds its
            own copy: about 6 bytes per pixel of the folder). The samples are the same either way.
        crops_per_image: random crops cut from each decoded image (``crop`` geometry only).
        on_error: ``raise`` or ``skip`` an image that fails to decode (see `VisitDataset`).
    """

    def __init__(
        self,
        files: Sequence[Path],
        degradation: Degradation,
        aux_scalars: Sequence[str],
        geometry: Geometry,
        size: int,
        seed: int | None,
        rank: int = 0,
        key: str = "data.root",
        repeats: int = 1,
        cache: bool = False,
        crops_per_image: int = 1,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(crops_per_image, on_error, seed, rank)
        if geometry != "full" and size < 1:
            raise ValueError(f"size must be positive for geometry {geometry!r}, got {size!r}")
        if repeats < 1:
            raise ValueError(f"data.repeats must be positive, got {repeats!r}")
        if geometry != "crop" and crops_per_image != 1:
            raise ValueError(
                f"geometry {geometry!r} gives one sample per image, not {crops_per_image}"
            )
        self.files = list(files)
        self.degradation = degradation
        self.aux_scalars = tuple(aux_scalars)
        self.geometry: Geometry = geometry
        self.size = size
        self.key = key
        self.repeats = repeats
        self.cache = cache

    item_lists = ("files",)

    def sources(self) -> list[tuple[Path, ...]]:
        return [(f,) for f in self.files]

    def forget(self) -> None:
        super().forget()
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files) * self.repeats

    def load(self, position: int) -> Tensor:
        """The (3, H, W) image of `position`, decoded or from the cache."""
        return to_tensor(self._read(position % len(self.files)))

    def _read(self, index: int) -> np.ndarray:
        """The file's float32 (H, W, 3) image, from the cache when on."""
        if not self.cache:
            return read_image(self.files[index], self.key)
        stored = self._decoded.get(index)
        if stored is None:
            image = read_image(self.files[index], self.key)
            stored = self._decoded[index] = np.rint(image * 65535.0).astype(np.uint16)
        return stored.astype(np.float32) / 65535.0

    def sample(self, loaded: Tensor, generator: torch.Generator) -> PairBatch:
        gt = loaded
        if self.geometry == "crop":
            (gt,) = random_hflip(generator, random_crop(gt, self.size, generator))
        elif self.geometry == "square":
            gt = center_square(gt, self.size)
        lq, values = self.degradation(gt, generator)
        return PairBatch(lq, gt, scalar_vector(values, self.aux_scalars))


class CleanImageDataModule(PairDataModule):
    """Clean images + a degradation chosen in config (``data.degradation``): the tasks `jpeg`
    (`ucdir.data.jpeg.jpeg_degradation`), `blind` (`ucdir.data.degradations`) and `samples`.

    Training: random `crop`² crops and horizontal flips of the images under `root` (flat or
    ImageNet class folders, or `train_list`; images smaller than the crop are resized up).
    Evaluation (validation and test): `val_root` (optionally restricted to `val_list`), or
    `val_list` read relative to `root` (those images then leave the training set), or else
    `val_count` images of `root` held out by a fixed name hash — the same set on every run. Each
    evaluation image is the DDRM square (`eval_crop`² from the centred square) or the whole image
    (`eval_crop` null, batch 1); its degradation is fixed by (`eval_seed`, index). The scalars
    the task can emit are the degradation's `scalar_names`; one it draws per sample (its
    `varying`) but the model is not told about gets a warning.

    Args:
        root: folder of clean training images (``data.root``).
        degradation: makes `lq` from a clean crop (``data.degradation``).
        crop: training crop side in px.
        eval_crop: evaluation square side in px, or None for whole images.
        train_list: optional list of training images relative to `root` (faster than a walk).
        val_root: optional folder of evaluation images.
        val_list: optional list of evaluation images, relative to `val_root` (or `root`); one
            path per line, extension optional (DDRM's ImageNet 1k list works as is).
        val_count: images of `root` held out when neither `val_root` nor `val_list` is given.
        eval_seed: seed of the evaluation samples' randomness.
        repeats: every training image appears this many times per epoch (for tiny folders).
        cache: keep the decoded training images in memory (see `CleanImageDataset`); for small
            folders whose decode dominates a step (``data.cache=true``).
        loader: the loader settings (`PairDataModule`).
    """

    task = "clean"

    def __init__(
        self,
        root: str,
        degradation: Degradation,
        crop: int = 256,
        eval_crop: int | None = 256,
        train_list: str | None = None,
        val_root: str | None = None,
        val_list: str | None = None,
        val_count: int = 16,
        eval_seed: int = 0,
        repeats: int = 1,
        cache: bool = False,
        **loader: Any,
    ) -> None:
        super().__init__(
            scalar_names=tuple(getattr(degradation, "scalar_names", ())),
            eval_fixed_size=eval_crop is not None,
            **loader,
        )
        if crop < 1:
            raise ValueError(f"data.crop must be positive, got {crop!r}")
        if eval_crop is not None and eval_crop < 1:
            raise ValueError(f"data.eval_crop must be positive or null, got {eval_crop!r}")
        if repeats < 1:
            raise ValueError(f"data.repeats must be positive, got {repeats!r}")
        for name in getattr(degradation, "varying", ()):
            if name not in self.aux_scalars:
                rank_zero_warn(
                    f"data.degradation draws {name!r} per sample but data.aux_scalars lacks "
                    f"it: the model is not told each sample's {name} "
                    f"(set task.aux_scalars=[{name}])"
                )
        self.root = root
        self.degradation = degradation
        self.crop = crop
        self.eval_crop = eval_crop
        self.train_list = train_list
        self.val_root = val_root
        self.val_list = val_list
        self.val_count = val_count
        self.eval_seed = eval_seed
        self.repeats = repeats
        self.cache = cache

    def split(self) -> tuple[list[Path], list[Path]]:
        """(training, evaluation) image files; the evaluation set is the same on every run."""
        root = Path(self.root)
        if self.train_list is not None:
            train = read_file_list(self.train_list, root, "data.train_list", "data.root")
        else:
            train = list_images(root, "data.root")
        if self.val_root is not None:
            if self.val_list is not None:
                return train, read_file_list(
                    self.val_list, self.val_root, "data.val_list", "data.val_root"
                )
            return train, list_images(self.val_root, "data.val_root")
        if self.val_list is not None:
            held = read_file_list(self.val_list, root, "data.val_list", "data.root")
            kept = set(held)
            return [f for f in train if f not in kept], held
        return holdout_split(train, root, self.val_count, "data.val_count")

    def build(self, stage: str, rank: int) -> None:
        train, evaluation = self.split()
        if stage == "fit":
            self.data_train = CleanImageDataset(
                train,
                self.degradation,
                self.aux_scalars,
                "crop",
                self.crop,
                None,
                rank,
                "data.root",
                self.repeats,
                self.cache,
                self.crops_per_image,
                self.on_error,
            )
        geometry: Geometry = "full" if self.eval_crop is None else "square"
        self.data_val = self.data_test = CleanImageDataset(
            evaluation,
            self.degradation,
            self.aux_scalars,
            geometry,
            self.eval_crop or 0,
            self.eval_seed,
            rank,
            "data.root" if self.val_root is None else "data.val_root",
        )
