"""Image files on disk: folders, file lists, a fixed hold-out split, and robust decoding.

Every error names the Hydra config key the path came from (e.g. ``data.root``), so a user knows
which override to fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".gif")
"""Listed in folders; an animated or multi-page file among them is refused when read
(`MultiFrameImageError`), in every command alike."""

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
    exclude: Sequence[Path] = (),
) -> list[Path]:
    """Every image file under `root`, recursively (flat or ImageNet class-folder layout) unless
    `recursive` is False.

    Hidden files and folders are skipped (so are the ``.<name>.partial-*`` files of interrupted
    writes, `ucdir.atomic`); symlinked folders are followed, each real folder once: a symlink loop
    (a folder linked into itself) or a second link to a listed folder is skipped with a warning
    naming it. Sorted by the path relative to `root`, so the order is the same on every machine.

    Args:
        extensions: lower-case file extensions to list (default `IMAGE_EXTENSIONS`).
        exclude: sub-folders to leave out (e.g. an output folder inside the input folder).

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: no file with one of `extensions` under `root`.
    """
    top = existing_dir(root, key)
    suffixes = tuple(extensions)
    excluded = {os.path.realpath(p) for p in exclude}
    seen = {os.path.realpath(top)}
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(top, followlinks=True):
        kept = []
        for d in sorted(dirs) if recursive else []:
            path, real = Path(folder) / d, os.path.realpath(Path(folder) / d)
            if d.startswith("."):
                continue
            if real in excluded:
                log.info("%s: %s is the output folder: not listed as input", key, path)
            elif real in seen:
                log.warning(
                    "%s: skipped %s: it is %s again (a symlink loop, or a second link to a listed "
                    "folder)",
                    key,
                    path,
                    real,
                )
            else:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        for name in names:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                path = Path(folder) / name
                found.append((path.relative_to(top).as_posix(), path))
    if not found:
        raise ValueError(f"{key}: no images ({', '.join(suffixes)}) found under {top}")
    return [path for _, path in sorted(found)]


def images_by_name(folder: str | Path, key: str, recursive: bool = False) -> dict[str, Path]:
    """Image files of a folder (`ucdir.data.images.list_images`) by their path relative to it
    without extension.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no image, or two files share a name (`a.png` and `a.jpg`).
    """
    root = Path(folder)
    images: dict[str, Path] = {}
    for path in list_images(root, key, recursive=recursive):
        name = path.relative_to(root).with_suffix("").as_posix()
        if name in images:
            raise ValueError(
                f"{key}: two images in {root} have the name {name!r}: {images[name]}, {path}"
            )
        images[name] = path
    return images


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


class NonFiniteImageError(ValueError):
    """A float image (e.g. a 32-bit float TIFF) holds NaN or infinite values: a network turns one
    such value into a black image, so it is refused unless repaired on request."""


class MultiFrameImageError(ValueError):
    """An animated or multi-page file (GIF, APNG, WebP, TIFF): which frame is meant is unknown,
    so it is refused rather than its first frame read silently."""


class Decoded(NamedTuple):
    """What `decode_image` returns.

    Attributes:
        pixels: (H, W, 3) float32 RGB in [0, 1].
        repaired: how many non-finite sample values were replaced (0 unless repairing).
    """

    pixels: np.ndarray
    repaired: int


def too_large(path: Path, key: str, pixels: int | None, max_pixels: int) -> ImageTooLargeError:
    """The error for a file of `pixels` pixels (None: more than twice the limit) over the limit."""
    size = f"{pixels:,} pixels" if pixels is not None else f"over {2 * max_pixels:,} pixels"
    return ImageTooLargeError(
        f"{key}: {path} claims {size}, the limit is max_pixels={max_pixels:,}: not decoded (a "
        "decompression bomb? pass max_pixels=<larger> to read a real image this large)"
    )


def _check_pixels(path: Path, key: str, pixels: int, max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels!r}")
    if pixels > max_pixels:
        raise too_large(path, key, pixels, max_pixels)


def _check_frames(path: Path, key: str, frames: int) -> None:
    if frames > 1:
        raise MultiFrameImageError(
            f"{key}: {path} is animated or multi-page ({frames} frames): not read, since which "
            "frame is meant is unknown; save the frame to restore as a single image (e.g. PNG)"
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
                _check_pixels(path, key, im.width * im.height, max_pixels)
                yield im
    except Image.DecompressionBombError as err:
        raise too_large(path, key, None, max_pixels) from err
    finally:
        Image.MAX_IMAGE_PIXELS = default


def read_image(path: str | Path, key: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3) (`decode_image`, which
    refuses non-finite values)."""
    return decode_image(path, key, max_pixels).pixels


def decode_image(
    path: str | Path, key: str, max_pixels: int = MAX_PIXELS, repair_nonfinite: bool = False
) -> Decoded:
    """Decode an image file to float32 RGB in [0, 1], shape (H, W, 3).

    8- and 16-bit PNG/TIFF, 32-bit float TIFF (grey or colour), JPEG, BMP, WebP, single-frame
    GIF; grayscale is repeated to three channels, alpha is dropped (the colour values are kept as
    stored), palettes and CMYK are converted to RGB and the EXIF orientation is applied. 16-bit
    and float colour images are decoded with OpenCV because Pillow would silently keep only the
    high byte of the first and cannot read the second. A file whose header claims more than
    `max_pixels` pixels is refused before anything is decoded; so is an animated or multi-page
    file (one policy everywhere: which frame is meant is unknown).

    Args:
        repair_nonfinite: replace the NaN values of a float image by 0 and ±inf by 1 / 0 (the
            count is returned) instead of refusing the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageTooLargeError: (a ValueError) the file claims more than `max_pixels` pixels.
        MultiFrameImageError: (a ValueError) the file holds several frames or pages.
        NonFiniteImageError: (a ValueError) NaN or ±inf values, unless `repair_nonfinite`.
        ValueError: the file is not a readable image (unknown format, truncated, corrupt).
    """
    p = existing_file(path, key)
    try:
        try:
            with _opened(p, key, max_pixels) as im:
                _check_frames(p, key, getattr(im, "n_frames", 1))
                if _is_deep_colour(im):
                    samples = _read_with_opencv(p, key)
                else:
                    im.load()
                    samples = _samples(ImageOps.exif_transpose(im))
        except UnidentifiedImageError:
            if p.suffix.lower() not in (".tif", ".tiff"):
                raise
            samples = _read_float_tiff(p, key, max_pixels)  # e.g. float32 RGB: Pillow has no mode
        samples, repaired = _finite(samples, p, key, repair_nonfinite)
        return Decoded(_to_rgb(samples), repaired)
    except (ImageTooLargeError, MultiFrameImageError, NonFiniteImageError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, cv2.error) as err:
        raise ValueError(f"{key}: cannot read image {p}: {err}") from err


def image_size(path: str | Path, key: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(height, width) of an image from its header, without decoding the pixels.

    Raises:
        ImageTooLargeError: the header claims more than `max_pixels` pixels.
        ValueError: the file is not a readable image.
    """
    p = existing_file(path, key)
    try:
        try:
            with _opened(p, key, max_pixels) as im:
                return im.height, im.width
        except UnidentifiedImageError:
            if p.suffix.lower() not in (".tif", ".tiff"):
                raise
            height, width = _tiff_size(p)
            _check_pixels(p, key, height * width, max_pixels)
            return height, width
    except ImageTooLargeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, KeyError) as err:
        raise ValueError(f"{key}: cannot read image {p}: {err}") from err


def _finite(samples: np.ndarray, path: Path, key: str, repair: bool) -> tuple[np.ndarray, int]:
    """`samples` and 0 when all are finite; else refused, or (`repair`) NaN -> 0, ±inf -> 1 / 0
    and the count of replaced values."""
    if not np.issubdtype(samples.dtype, np.floating):
        return samples, 0
    bad = int(samples.size - np.count_nonzero(np.isfinite(samples)))
    if not bad:
        return samples, 0
    if not repair:
        nan = int(np.count_nonzero(np.isnan(samples)))
        raise NonFiniteImageError(
            f"{key}: {path} has {bad:,} non-finite value(s) ({nan:,} NaN, {bad - nan:,} ±inf) "
            f"of {samples.size:,}: refused, a network turns them into a black image (python -m "
            "ucdir.restore: repair_nonfinite=true replaces NaN by 0 and ±inf by 1 / 0)"
        )
    return np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=0.0), bad


def _to_rgb(samples: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour samples in [0, 1] -> (H, W, 3) float32, clipped."""
    if samples.ndim == 2:
        samples = np.repeat(samples[..., None], 3, axis=2)
    return np.ascontiguousarray(np.clip(samples.astype(np.float32, copy=False), 0.0, 1.0))


def _is_deep_colour(im: Image.Image) -> bool:
    """True for colour images with more than 8 bits per sample (Pillow's raw mode says so)."""
    if im.mode not in ("RGB", "RGBA") or not isinstance(im, ImageFile.ImageFile) or not im.tile:
        return False
    args = im.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _tiff_size(path: Path) -> tuple[int, int]:
    """(height, width) of a TIFF's first page from its header (Pillow's tag parser): also for
    files Pillow cannot decode, such as 32-bit float RGB."""
    with path.open("rb") as fp:
        prefix = fp.read(8)
        if prefix[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ValueError("not a TIFF file")
        ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=prefix)
        fp.seek(ifd.next)
        ifd.load(fp)
        return int(ifd[257]), int(ifd[256])


def _read_float_tiff(path: Path, key: str, max_pixels: int) -> np.ndarray:
    """The samples of a TIFF Pillow cannot decode (e.g. float32 RGB), size checked first."""
    height, width = _tiff_size(path)
    _check_pixels(path, key, height * width, max_pixels)
    _check_frames(path, key, cv2.imcount(str(path)))
    return _read_with_opencv(path, key)


def _read_with_opencv(path: Path, key: str) -> np.ndarray:
    """(H, W) or (H, W, 3) samples scaled to [0, 1] (not clipped: float files keep NaN, inf)."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise ValueError(f"{key}: cannot decode image {path} (OpenCV)")
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[2] == 1 else arr[..., 2::-1]  # OpenCV stores BGR(A)
    scale = {np.dtype(np.uint16): 65535.0, np.dtype(np.uint8): 255.0}.get(arr.dtype, 1.0)
    return arr.astype(np.float32) / np.float32(scale)


def _samples(im: Image.Image) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB samples scaled to [0, 1], not clipped (mode F keeps NaN)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    # Pillow's RGBA/LA/PA -> RGB conversion drops alpha and keeps the stored colour values.
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    return np.asarray(rgb, dtype=np.float32) / 255.0
