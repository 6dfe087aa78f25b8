"""Camera raw files through rawpy/LibRaw: exposure amplification, rendering and Bayer packing.

Nothing here assumes a camera: the Bayer layout, the per-channel black levels and the white level
are read from each file (SID's Sony A7S2 has RGGB, black 512, white 16383; other cameras differ).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rawpy

from ucdir.data.images import MAX_PIXELS, existing_file, too_large

RAW_EXTENSIONS = (
    ".arw", ".srf", ".sr2", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".dng", ".raf", ".orf",
    ".rw2", ".rwl", ".pef", ".srw", ".kdc", ".dcr", ".k25", ".3fr", ".fff", ".iiq", ".erf",
    ".mef", ".mos", ".mrw", ".x3f",
)  # fmt: skip
"""Lower-case extensions of the camera raw files LibRaw reads (Sony, Canon, Nikon, Adobe DNG,
Fujifilm, Olympus, Panasonic, Leica, Pentax, Samsung, Kodak, Hasselblad, Phase One, ...)."""


def render_params(half_size: bool) -> rawpy.Params:
    """The rawpy `postprocess` settings shared by every input and target render.

    Camera white balance, no auto-brightness, 16-bit output, LibRaw's default AHD demosaic (a
    2×2 binning when `half_size`), sRGB primaries and BT.709 gamma; `user_flip=0` keeps the sensor
    orientation (so packed raw and renders line up); `adjust_maximum_thr=0` makes LibRaw scale by
    the file's white level instead of lowering it to a bright image's data maximum, which would
    render a pair's input and target differently.
    """
    return rawpy.Params(
        half_size=half_size,
        use_camera_wb=True,
        no_auto_bright=True,
        output_bps=16,
        user_flip=0,
        adjust_maximum_thr=0.0,
    )


CHANNELS = ("R", "Gr", "B", "Gb")
"""Channel order of packed Bayer raw: red, the green in red's rows, blue, the green in blue's rows
(for RGGB this is SID's order)."""


@contextmanager
def open_raw(path: str | Path, key: str, max_pixels: int = MAX_PIXELS) -> Iterator[rawpy.RawPy]:
    """Open a raw file with rawpy; errors name config key `key`.

    The sensor size is read from the header first: a file claiming more than `max_pixels` is
    refused before its data is unpacked (`ucdir.data.images.ImageTooLargeError`). LibRaw's errors
    while unpacking or rendering inside the block become ValueErrors naming the file.
    """
    p = existing_file(path, key)
    try:
        raw = rawpy.imread(str(p))
    except (rawpy.LibRawError, OSError) as err:
        raise ValueError(f"{key}: cannot read raw file {p}: {err}") from err
    try:
        pixels = int(raw.sizes.raw_height) * int(raw.sizes.raw_width)
        if pixels > max_pixels:
            raise too_large(p, key, pixels, max_pixels)
        yield raw
    except rawpy.LibRawError as err:
        raise ValueError(f"{key}: cannot decode raw file {p}: {err}") from err
    finally:
        raw.close()


def bayer_offsets(pattern: np.ndarray, color_desc: str) -> list[tuple[int, int]]:
    """(row, col) inside the 2×2 tile of each channel of `CHANNELS`, from rawpy's layout.

    Args:
        pattern: rawpy's `raw_pattern`, (2, 2) indices into `color_desc`.
        color_desc: rawpy's `color_desc`, e.g. ``"RGBG"``.

    Raises:
        ValueError: the sensor is not a 2×2 Bayer sensor with one R, two G and one B.
    """
    pattern = np.asarray(pattern)
    problem = f"not a 2x2 Bayer sensor: pattern {pattern.tolist()}, colours {color_desc!r}"
    if pattern.shape != (2, 2) or int(pattern.max()) >= len(color_desc):
        raise ValueError(problem)
    letters = {(r, c): color_desc[int(pattern[r, c])] for r in range(2) for c in range(2)}
    if sorted(letters.values()) != ["B", "G", "G", "R"]:
        raise ValueError(problem)
    red = next(pos for pos, letter in letters.items() if letter == "R")
    blue = next(pos for pos, letter in letters.items() if letter == "B")
    return [red, (red[0], 1 - red[1]), blue, (blue[0], 1 - blue[1])]


def black_map(pattern: np.ndarray, black: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel black level (float32, `shape`) from the per-channel levels of rawpy's pattern.

    The pattern tile (2×2 Bayer, 6×6 X-Trans, ...) is repeated from the top-left pixel.
    """
    pattern = np.asarray(pattern)
    if pattern.ndim != 2:
        raise ValueError(f"colour filter pattern must be 2-D, got {pattern!r}")
    tile = np.asarray(black, dtype=np.float32)[pattern]
    reps = (-(-shape[0] // tile.shape[0]), -(-shape[1] // tile.shape[1]))
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def amplify(raw: rawpy.RawPy, ratio: float) -> None:
    """Multiply the signal above black by `ratio` in place, clipping at the white level.

    Works on `raw_image_visible`, so a later `postprocess` renders the amplified exposure.
    Values below black are set to black.
    """
    if ratio <= 0:
        raise ValueError(f"exposure ratio must be positive, got {ratio!r}")
    mosaic = raw.raw_image_visible
    black = black_map(_pattern(raw), raw.black_level_per_channel, mosaic.shape)
    signal = np.clip(mosaic.astype(np.float32) - black, 0, None) * ratio
    out = black + np.minimum(signal, float(raw.white_level) - black)
    mosaic[...] = np.rint(out).astype(np.uint16)


def render(
    path: str | Path,
    ratio: float = 1.0,
    half_size: bool = True,
    key: str = "data.root",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Render a raw file to 16-bit sRGB with `render_params`, after amplifying it by `ratio`.

    Returns:
        (H, W, 3) uint16; `half_size` halves both sides (one RGB pixel per 2×2 Bayer tile).
    """
    with open_raw(path, key, max_pixels) as raw:
        if ratio != 1.0:
            try:
                amplify(raw, ratio)
            except ValueError as err:
                raise ValueError(f"{key}: cannot amplify {path}: {err}") from err
        return np.asarray(raw.postprocess(render_params(half_size)))


def pack_bayer(
    mosaic: np.ndarray,
    pattern: np.ndarray,
    color_desc: str,
    black: Sequence[float],
    white: float,
) -> np.ndarray:
    """Pack a Bayer mosaic into 4 half-resolution channels (`CHANNELS` order), black-subtracted.

    Args:
        mosaic: (H, W) raw values (an odd last row or column is dropped).
        pattern, color_desc: rawpy's `raw_pattern` and `color_desc` for this mosaic.
        black: per-channel black levels, indexed like `pattern` (rawpy's `black_level_per_channel`).
        white: the white (saturation) level.

    Returns:
        (H // 2, W // 2, 4) float32, (value − black) / (white − black) clipped to [0, 1].
    """
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    black_px = black_map(pattern, black, (h, w))
    signal = (mosaic[:h, :w].astype(np.float32) - black_px) / (float(white) - black_px)
    signal = np.clip(signal, 0.0, 1.0)
    return np.stack([signal[r::2, c::2] for r, c in bayer_offsets(pattern, color_desc)], axis=-1)


def read_packed(
    path: str | Path, key: str = "data.root", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """The packed Bayer raw of a file, `pack_bayer` of its visible area with its own levels."""
    with open_raw(path, key, max_pixels) as raw:
        desc = raw.color_desc.decode() if isinstance(raw.color_desc, bytes) else raw.color_desc
        try:
            return pack_bayer(
                raw.raw_image_visible,
                _pattern(raw),
                desc,
                raw.black_level_per_channel,
                raw.white_level,
            )
        except ValueError as err:
            raise ValueError(f"{key}: cannot pack {path}: {err}") from err


def _pattern(raw: rawpy.RawPy) -> np.ndarray:
    if raw.raw_pattern is None:
        raise ValueError("the file has no colour filter array (not a Bayer/X-Trans raw)")
    return np.asarray(raw.raw_pattern)
