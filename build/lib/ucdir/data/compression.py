"""Real JPEG compression through libjpeg (Pillow), the degradation of the jpeg and samples tasks."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def jpeg_roundtrip(image: Tensor, quality: int) -> Tensor:
    """Encode and decode an RGB image as baseline JPEG, 4:2:0 chroma subsampling.

    The image is rounded to 8 bits first; the colour transform is the standard RGB -> YCbCr of
    JPEG (unlike the official code, which hands RGB to OpenCV as BGR).

    Args:
        image: (3, H, W) float in [0, 1] (values outside are clipped).
        quality: libjpeg quality factor in [1, 100].

    Returns:
        (3, H, W) float32 in [0, 1], the decoded image.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality!r}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB").save(
        buffer, format="JPEG", quality=int(quality), subsampling="4:2:0"
    )
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()
