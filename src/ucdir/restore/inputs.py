"""What `python -m ucdir.restore` reads: images for RGB models, camera raw files for models whose
input is packed Bayer raw (trained with ``task=sid task.input=packed``), decoded as that task
decodes them (`ucdir.data.raw.read_packed`, amplified by the exposure ratio and clipped at 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ucdir.data.images import IMAGE_EXTENSIONS, decode_image, list_images
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


def list_inputs(source: Path, kind: InputKind, output: Path | None = None) -> list[Path]:
    """The files to restore: `source` itself, or the files of `kind` under the folder `source`
    (files of the other kind there, e.g. the JPEGs a camera writes beside its raw files, are
    left out; so is the folder `output` when it lies inside `source`, so that a run into it can
    be continued; a symlink loop is skipped, named in a warning).

    Raises:
        FileNotFoundError: `source` is neither a file nor a folder.
        ValueError: the file is of the other kind, or the folder holds no file of `kind`.
    """
    extensions = RAW_EXTENSIONS if kind == "raw" else IMAGE_EXTENSIONS
    if source.is_dir():
        try:
            exclude = () if output is None else (output,)
            return list_images(source, "input", extensions=extensions, exclude=exclude)
        except ValueError as err:
            raise ValueError(f"{err}: {_WANTS[kind]}") from None
    check_source(source)
    if is_raw(source) != (kind == "raw"):
        what = "a camera raw file" if is_raw(source) else "not a camera raw file"
        raise ValueError(f"input: {source} is {what}, but {_WANTS[kind]}; {_GIVE[kind]}")
    return [source]


class LoadedInput(NamedTuple):
    """What `load_input` returns: the model input and how many non-finite values were replaced."""

    lq: Tensor
    repaired: int = 0


def read_input(
    path: Path, kind: InputKind, max_pixels: int, exposure_ratio: float | None = None
) -> Tensor:
    """The model input of one file, (1, C, H, W) float32 in [0, 1] (`load_input`; a float image
    with NaN or ±inf values is refused)."""
    return load_input(path, kind, max_pixels, exposure_ratio).lq


def load_input(
    path: Path,
    kind: InputKind,
    max_pixels: int,
    exposure_ratio: float | None = None,
    repair_nonfinite: bool = False,
) -> LoadedInput:
    """The model input of one file, (1, C, H, W) float32 in [0, 1], and the count of repaired
    non-finite values.

    Args:
        kind: ``image``: RGB (`ucdir.data.images.decode_image`); ``raw``: packed Bayer at half
            size, (raw − black) / (white − black) times `exposure_ratio`, clipped at 1, as the
            sid task feeds it in training.
        max_pixels: a file claiming more pixels is refused before it is decoded.
        repair_nonfinite: a float image's NaN values become 0 and ±inf 1 / 0 (counted) instead
            of the file being refused.

    Raises:
        ValueError: the file cannot be read, claims more than `max_pixels` pixels, holds several
            frames, or (unless `repair_nonfinite`) NaN or infinite values.
    """
    if kind == "image":
        decoded = decode_image(path, "input", max_pixels, repair_nonfinite)
        return LoadedInput(
            torch.from_numpy(decoded.pixels).permute(2, 0, 1)[None], decoded.repaired
        )
    if exposure_ratio is None:
        raise ValueError("exposure_ratio: raw input needs exposure_ratio=<amplification>")
    packed = torch.from_numpy(read_packed(path, "input", max_pixels)).permute(2, 0, 1)[None]
    return LoadedInput((packed * exposure_ratio).clamp(max=1.0))
