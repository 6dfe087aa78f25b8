"""Files that must not crash a batch: a PNG header claiming a huge image (decompression bomb)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid-looking 8-bit RGB PNG whose IHDR claims `width` × `height` pixels (a few bytes of
    data follow): decoding it would allocate width · height · 3 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )
    return path


def float_tiff(path: Path, channels: int = 3, bad: float = float("nan"), count: int = 1) -> Path:
    """A 32-bit float TIFF (16×20, grey mode 'F' with `channels=1`, else RGB via OpenCV, which
    Pillow cannot decode) in [0, 1] whose first `count` samples are `bad` (NaN or ±inf)."""
    import cv2
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.random((16, 20, channels), dtype=np.float32)
    pixels.reshape(-1)[:count] = bad
    path.parent.mkdir(parents=True, exist_ok=True)
    if channels == 1:
        Image.fromarray(pixels[..., 0], mode="F").save(path)
    elif not cv2.imwrite(str(path), pixels[..., ::-1]):
        raise OSError(f"cannot write {path}")
    return path


def animated_gif(path: Path, frames: int = 3) -> Path:
    """A GIF of `frames` frames (a single-frame GIF with `frames=1`)."""
    from PIL import Image

    images = [Image.new("RGB", (24, 20), (40 * k, 80, 120)) for k in range(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return path
