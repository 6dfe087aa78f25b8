"""Image files on disk: folders, file lists, a fixed hold-out split, and robust decoding.

Every error names the Hydra config key the path came from (e.g. ``data.root``), so a user knows
which override to fix.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm")

MAX_PIXELS = 200_000_000
"""Default size limit (width × height) of a file to decode: above the largest camera sensors
(151 MP), far below a decompression bomb's claimed size. The commands' `max_pixels=` sets it."""


def existing_dir(path: str | Path, key: str) -> Path:
    """`path` as a Path after checking that it is a folder; the error names config key `key`."""
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "does not exist"
        raise FileNotFoundError(f"{key}: folder {p} {what}")
    return p


def existing_file(path: str | Path, key: str) -> Path:
    """`path` as a Path after checking that it is a file; the error names config key `key`."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder, not a file" if p.exists() else "does not exist"
        raise FileNotFoundError(f"{key}: file {p} {what}")
    return p


def list_images(
    root: str | Path,
    key: str,
    recursive: bool = True,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[Path]:
    """Every image file under `root`, recursively (flat or ImageNet class-folder layout) unless
    `recursive` is False.

    Hidden files and folders are skipped (so are the ``.<name>.partial-*`` files of interrupted
    writes, `ucdir.atomic`); symlinked folders are followed. Sorted by the path relative to
    `root`, so the order is the same on every machine.

    Args:
        extensions: lower-case file extensions to list (default `IMAGE_EXTENSIONS`).

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: no file with one of `extensions` under `root`.
    """
    top = existing_dir(root, key)
    suffixes = tuple(extensions)
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(top, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        for name in names:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                path = Path(folder) / name
                found.append((path.relative_to(top).as_posix(), path))
    if not found:
        raise ValueError(f"{key}: no images ({', '.join(suffixes)}) found under {top}")
    return [path for _, path in sorted(found)]


def read_file_list(list_path: str | Path, root: str | Path, key: str, root_key: str) -> list[Path]:
    """Images named by a text file, one per line, relative to `root`.

    `key` and `root_key` are the config keys of the list and of the folder, for error messages.
    The first whitespace-separated token of each line is the path (further tokens such as a class
    label are ignored); blank lines and lines starting with ``#`` are skipped. A name without an
    extension (the DDRM ImageNet 1k list writes ``n01440764/ILSVRC2012_val_00000293 0``) is looked
    up with each image extension in lower and upper case.

    Raises:
        FileNotFoundError: the list, `root` or a listed image does not exist (line number given).
        ValueError: the list names no image.
    """
    listed = existing_file(list_path, key)
    top = existing_dir(root, root_key)
    files: list[Path] = []
    for number, line in enumerate(listed.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        files.append(_resolve_listed(top, tokens[0], f"{key}: {listed} line {number}"))
    if not files:
        raise ValueError(f"{key}: {listed} lists no images")
    return files


def _resolve_listed(root: Path, name: str, where: str) -> Path:
    path = root / name
    if path.is_file():
        return path
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        for ext in IMAGE_EXTENSIONS:
            for candidate in (
                path.with_name(path.name + ext),
                path.with_name(path.name + ext.upper()),
            ):
                if candidate.is_file():
                    return candidate
    raise FileNotFoundError(f"{where}: {name!r} not found under {root}")


def holdout_split(
    files: Sequence[Path], root: Path, count: int, key: str
) -> tuple[list[Path], list[Path]]:
    """Split `files` into (train, held out): the `count` files whose relative path hashes lowest.

    The choice depends only on the file names (SHA-1 of the path relative to `root`), so it is the
    same on every run and machine and barely moves when files are added or removed.

    Raises:
        ValueError: `count` < 1 or no file would be left for training.
    """
    if count < 1 or count >= len(files):
        raise ValueError(
            f"{key}={count} must hold out between 1 and {len(files) - 1} of the {len(files)} "
            f"images under {root}"
        )

    def rank(path: Path) -> str:
        return hashlib.sha1(path.relative_to(root).as_posix().encode()).hexdigest()

    held = set(sorted(files, key=rank)[:count])
    return [f for f in files if f not in held], [f for f in files if f in held]


class ImageTooLargeError(ValueError):
    """A file claims more pixels than the `max_pixels` limit (a decompression bomb, or a larger
    image than allowed): refused before its pixels are decoded."""


def too_large(path: Path, key: str, pixels: int | None, max_pixels: int) -> ImageTooLargeError:
    """The error for a file of `pixels` pixels (None: more than twice the limit) over the limit."""
    size = f"{pixels:,} pixels" if pixels is not None else f"over {2 * max_pixels:,} pixels"
    return ImageTooLargeError(
        f"{key}: {path} claims {size}, the limit is max_pixels={max_pixels:,}: not decoded (a "
        "decompression bomb? pass max_pixels=<larger> to read a real image this large)"
    )


@contextmanager
def _opened(path: Path, key: str, max_pixels: int) -> Iterator[Image.Image]:
    """`Image.open(path)` with `max_pixels` as the size limit instead of Pillow's global one."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels!r}")
    default = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow itself then refuses only above 2 × max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise too_large(path, key, im.width * im.height, max_pixels)
                yield im
    except Image.DecompressionBombError as err:
        raise too_large(path, key, None, max_pixels) from err
    finally:
        Image.MAX_IMAGE_PIXELS = default


def read_image(path: str | Path, key: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3).

    8- and 16-bit PNG/TIFF, JPEG, BMP, WebP; grayscale is repeated to three channels, alpha is
    dropped (the colour values are kept as stored), palettes and CMYK are converted to RGB and the
    EXIF orientation is applied. 16-bit colour images are decoded with OpenCV because Pillow would
    silently keep only their high byte. A file whose header claims more than `max_pixels`
    pixels is refused before anything is decoded.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageTooLargeError: (a ValueError) the file claims more than `max_pixels` pixels.
        ValueError: the file is not a readable image (unknown format, truncated, corrupt).
    """
    p = existing_file(path, key)
    try:
        with _opened(p, key, max_pixels) as im:
            if _is_deep_colour(im):
                return _read_deep_colour(p, key)
            im.load()
            return _to_rgb_float(ImageOps.exif_transpose(im))
    except ImageTooLargeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{key}: cannot read image {p}: {err}") from err


def image_size(path: str | Path, key: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels.

    Raises:
        ImageTooLargeError: the header claims more than `max_pixels` pixels.
        ValueError: the file is not a readable image.
    """
    p = existing_file(path, key)
    try:
        with _opened(p, key, max_pixels) as im:
            return im.height, im.width
    except ImageTooLargeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{key}: cannot read image {p}: {err}") from err


def _is_deep_colour(im: Image.Image) -> bool:
    """True for colour images with more than 8 bits per sample (Pillow's raw mode says so)."""
    if im.mode not in ("RGB", "RGBA") or not isinstance(im, ImageFile.ImageFile) or not im.tile:
        return False
    args = im.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_deep_colour(path: Path, key: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{key}: cannot decode 16-bit colour image {path}")
    rgb = arr[..., 2::-1]  # OpenCV stores BGR(A)
    scale = {np.dtype(np.uint16): 65535.0, np.dtype(np.uint8): 255.0}.get(arr.dtype, 1.0)
    return np.ascontiguousarray(np.clip(rgb.astype(np.float32) / scale, 0.0, 1.0))


def _to_rgb_float(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if im.mode == "F":
        return np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=2)
    # Pillow's RGBA/LA/PA -> RGB conversion drops alpha and keeps the stored colour values.
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    return np.asarray(rgb, dtype=np.float32) / 255.0
