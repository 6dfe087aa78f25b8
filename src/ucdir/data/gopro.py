"""GoPro motion deblurring: real blurred/sharp frame pairs in the GOPRO_Large layout (the
paired-image source, `ucdir.data.paired`, with GoPro's folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ucdir.data.images import existing_dir, list_images
from ucdir.data.paired import Pair, PairedImageDataModule

BlurKind = Literal["blur", "blur_gamma"]


def gopro_pairs(root: str | Path, split: str, blur: BlurKind) -> list[Pair]:
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
    pairs: list[Pair] = []
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


class GoProDataModule(PairedImageDataModule):
    """GoPro deblurring pairs (GOPRO_Large: 2103 training, 1111 test frames at 1280×720).

    Training: random `crop`² crops of ``train/`` with horizontal flips (the official
    augmentation). Validation and test: the whole ``test/`` frames, batch 1 (limit validation
    with the trainer's ``limit_val_batches``). The task has no auxiliary scalars.

    Args:
        root: the GOPRO_Large folder holding ``train/`` and ``test/`` (``data.root``).
        blur: ``blur`` (linear average of sharp frames, what most papers use) or ``blur_gamma``
            (averaged in a gamma-corrected space).
        crop: training crop side in px.
        loader: the loader settings (`ucdir.data.base.PairDataModule`).
    """

    task = "gopro"
    key = "data.root"

    def __init__(self, root: str, blur: BlurKind = "blur", crop: int = 256, **loader: Any) -> None:
        super().__init__(crop=crop, **loader)
        if blur not in ("blur", "blur_gamma"):
            raise ValueError(f"data.blur must be 'blur' or 'blur_gamma', got {blur!r}")
        self.root = root
        self.blur: BlurKind = blur

    def pairs(self, split: str) -> list[Pair]:
        """``train/`` for training, ``test/`` for validation and test."""
        return gopro_pairs(self.root, "train" if split == "train" else "test", self.blur)
