"""What `python -m ucdir.restore` reads: images for RGB models, camera raw files for models whose
input is packed Bayer raw (trained with ``task=sid task.input=packed``), decoded as that task
decodes them (`ucdir.data.raw.read_packed`, amplified by the exposure ratio and clipped at 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ucdir.data.images import IMAGE_EXTENSIONS, list_images, read_image
from ucdir.data.raw import RAW_EXTENSIONS, read_packed

InputKind = Literal["image", "raw"]

_WANTS = {
    "image": "this model restores RGB images (3-channel input)",
    "raw": "this model restores camera raw files (packed Bayer input, 4 channels: trained with "
    "task=sid task.input=packed)",
}
_GIVE = {
    "image": "give images (PNG, JPEG, TIFF, ...) or use a raw model",
    "raw": f"give camera raw files ({', '.join(e.upper() for e in RAW_EXTENSIONS[:6])}, ...)",
}


def input_kind(lq_channels: int) -> InputKind:
    """What a model with `lq_channels` input channels restores."""
    return "raw" if lq_channels == 4 else "image"


def is_raw(path: Path) -> bool:
    """A camera raw file, by its extension."""
    return path.suffix.lower() in RAW_EXTENSIONS


def check_source(source: Path) -> None:
    """Raises FileNotFoundError, naming `input=`, unless `source` is a file or a folder."""
    if not (source.is_file() or source.is_dir()):
        raise FileNotFoundError(f"input: {str(source)!r} is neither an image file nor a folder")


def list_inputs(source: Path, kind: InputKind) -> list[Path]:
    """The files to restore: `source` itself, or the files of `kind` under the folder `source`
    (files of the other kind there, e.g. the JPEGs a camera writes beside its raw files, are
    left out).

    Raises:
        FileNotFoundError: `source` is neither a file nor a folder.
        ValueError: the file is of the other kind, or the folder holds no file of `kind`.
    """
    extensions = RAW_EXTENSIONS if kind == "raw" else IMAGE_EXTENSIONS
    if source.is_dir():
        try:
            return list_images(source, "input", extensions=extensions)
        except ValueError as err:
            raise ValueError(f"{err}: {_WANTS[kind]}") from None
    check_source(source)
    if is_raw(source) != (kind == "raw"):
        what = "a camera raw file" if is_raw(source) else "not a camera raw file"
        raise ValueError(f"input: {source} is {what}, but {_WANTS[kind]}; {_GIVE[kind]}")
    return [source]


def read_input(
    path: Path, kind: InputKind, max_pixels: int, exposure_ratio: float | None = None
) -> Tensor:
    """The model input of one file, (1, C, H, W) float32 in [0, 1].

    Args:
        kind: ``image``: RGB (`ucdir.data.images.read_image`); ``raw``: packed Bayer at half
            size, (raw − black) / (white − black) times `exposure_ratio`, clipped at 1, as the
            sid task feeds it in training.
        max_pixels: a file claiming more pixels is refused before it is decoded.

    Raises:
        ValueError: the file cannot be read, or claims more than `max_pixels` pixels.
    """
    if kind == "image":
        return torch.from_numpy(read_image(path, "input", max_pixels)).permute(2, 0, 1)[None]
    if exposure_ratio is None:
        raise ValueError("exposure_ratio: raw input needs exposure_ratio=<amplification>")
    packed = torch.from_numpy(read_packed(path, "input", max_pixels)).permute(2, 0, 1)[None]
    return (packed * exposure_ratio).clamp(max=1.0)
