"""PNG files: 8- or 16-bit RGB from (3, H, W) tensors in [0, 1], written atomically (restored
images, evaluation outputs, validation images)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from ucdir.atomic import write_bytes_atomic

BITS = (8, 16)


def check_bits(bits: int) -> int:
    """`bits` after checking it is a PNG depth this package writes (8 or 16)."""
    if bits not in BITS:
        raise ValueError(f"bits must be 8 or 16 (PNG bits per channel), got {bits!r}")
    return bits


def write_png(image: Tensor, path: Path, bits: int = 8) -> None:
    """Writes a (3, H, W) [0, 1] image as an 8- or 16-bit PNG, atomically."""
    check_bits(bits)
    array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if bits == 16:
        import cv2

        ok, encoded = cv2.imencode(".png", (array[..., ::-1] * 65535).round().astype(np.uint16))
        if not ok:
            raise ValueError(f"cannot encode {path} as a 16-bit PNG")
        data = encoded.tobytes()
    else:
        buffer = io.BytesIO()
        Image.fromarray((array * 255).round().astype(np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
    write_bytes_atomic(path, data)
