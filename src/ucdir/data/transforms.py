"""Geometry of training and evaluation samples: padding, crops, flips and resizes of (C, H, W).

Crops of a pair stay aligned, also when `lq` is packed Bayer raw at half the size of `gt`.
Randomness only through an explicit `torch.Generator`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, C) array -> contiguous (C, H, W) float32 tensor (values unchanged)."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)


def pad_to(x: Tensor, height: int, width: int) -> Tensor:
    """Reflect-pad (C, H, W) at the bottom and right up to at least `height` × `width`.

    Repeated reflection handles images smaller than half the target (a single reflect pad is
    limited to the image size); a 1-pixel side is replicated.
    """
    while x.shape[-2] < height or x.shape[-1] < width:
        h, w = x.shape[-2:]
        pad_h, pad_w = min(max(height - h, 0), h - 1), min(max(width - w, 0), w - 1)
        if (height > h and pad_h == 0) or (width > w and pad_w == 0):  # 1-px side: no reflection
            pad = (0, max(width - w, 0), 0, max(height - h, 0))
            return F.pad(x[None], pad, mode="replicate")[0]
        x = F.pad(x[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
    return x


def random_crop_pair(
    lq: Tensor, gt: Tensor, crop: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The same random window of a pair: `crop`² of `gt`, `crop / s`² of `lq` (s = gt / lq size).

    s is 1 for RGB pairs and 2 for packed raw; images smaller than the crop are reflect-padded
    first (both alike), never retried.

    Raises:
        ValueError: the pair's sizes are not s× apart, or `crop` is not a multiple of s.
    """
    scale = _scale(lq, gt)
    if crop % scale:
        raise ValueError(f"crop must be a multiple of {scale} for this pair, got {crop!r}")
    c = crop // scale
    lq = pad_to(lq, c, c)
    gt = pad_to(gt, crop, crop)
    top = int(torch.randint(0, lq.shape[-2] - c + 1, (1,), generator=generator))
    left = int(torch.randint(0, lq.shape[-1] - c + 1, (1,), generator=generator))
    lq = lq[:, top : top + c, left : left + c]
    gt = gt[:, top * scale : (top + c) * scale, left * scale : (left + c) * scale]
    return lq, gt


def random_crop(x: Tensor, crop: int, generator: torch.Generator) -> Tensor:
    """A random `crop`² window of (C, H, W); smaller images are first resized up to fit."""
    x = fit_short_side(x, crop)
    top = int(torch.randint(0, x.shape[-2] - crop + 1, (1,), generator=generator))
    left = int(torch.randint(0, x.shape[-1] - crop + 1, (1,), generator=generator))
    return x[:, top : top + crop, left : left + crop]


def random_hflip(generator: torch.Generator, *images: Tensor) -> tuple[Tensor, ...]:
    """Mirror all `images` left-right together with probability 1/2 (the official augmentation)."""
    if bool(torch.rand((), generator=generator) < 0.5):
        return tuple(x.flip(-1) for x in images)
    return images


def fit_short_side(x: Tensor, size: int) -> Tensor:
    """Resize (C, H, W) up (bicubic, clamped to [0, 1]) so its short side is at least `size`."""
    short = min(x.shape[-2:])
    if short >= size:
        return x
    h = max(size, round(x.shape[-2] * size / short))
    w = max(size, round(x.shape[-1] * size / short))
    return F.interpolate(x[None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def center_square(x: Tensor, size: int) -> Tensor:
    """The centred square of side min(H, W), resized to `size`² (bilinear, antialiased).

    This is DDRM's 256×256 evaluation protocol, which the paper follows for JPEG restoration;
    a square image already of side `size` is returned unchanged.
    """
    h, w = x.shape[-2:]
    side = min(h, w)
    # torchvision's center_crop (DDRM's pipeline) rounds the margin half to even
    top, left = round((h - side) / 2), round((w - side) / 2)
    x = x[:, top : top + side, left : left + side]
    if side == size:
        return x
    out = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=side > size)
    return out[0].clamp(0, 1)


def _scale(lq: Tensor, gt: Tensor) -> int:
    for scale in (1, 2):
        if gt.shape[-2:] == (lq.shape[-2] * scale, lq.shape[-1] * scale):
            return scale
    lq_size, gt_size = f"{lq.shape[-1]}x{lq.shape[-2]}", f"{gt.shape[-1]}x{gt.shape[-2]}"
    raise ValueError(f"pair sizes differ: lq is {lq_size}, gt is {gt_size}")
