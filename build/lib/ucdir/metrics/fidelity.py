"""Full-reference fidelity metrics: PSNR, SSIM (torchmetrics) and the official "3-D SSIM".

All functions take batches (B, C, H, W) of images in [0, 1] and return one value per image (B,).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

ColorSpace = Literal["rgb", "y"]

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def rgb_to_y(x: Tensor) -> Tensor:
    """MATLAB-style BT.601 luma: (B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Y in [16, 235] / 255."""
    w = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(1, keepdim=True)) / 255.0


def prepare(x: Tensor, color: ColorSpace = "rgb", crop_border: int = 0) -> Tensor:
    """The image a fidelity metric sees: optional Y channel, then `crop_border` px off each side."""
    if color == "y":
        x = rgb_to_y(x)
    elif color != "rgb":
        raise ValueError(f"color must be 'rgb' or 'y', got {color!r}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return x


def psnr(restored: Tensor, gt: Tensor) -> Tensor:
    """PSNR in dB per image, data range 1 (torchmetrics): (B, C, H, W) x2 in [0, 1] -> (B,)."""
    return peak_signal_noise_ratio(restored, gt, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(restored: Tensor, gt: Tensor) -> Tensor:
    """SSIM per image (torchmetrics): 11×11 Gaussian window, σ = 1.5, mean over channels and pixels.

    Args:
        restored: (B, C, H, W) in [0, 1].
        gt: (B, C, H, W) in [0, 1].

    Returns:
        (B,) SSIM: mean of the SSIM map over every pixel and channel, the image reflect-padded by
        5 px (torchmetrics' convention; skimage/BasicSR average the valid region instead).
    """
    out = structural_similarity_index_measure(
        restored, gt, kernel_size=SSIM_KERNEL, sigma=SSIM_SIGMA, data_range=1.0, reduction="none"
    )
    return out  # type: ignore[return-value]


def _gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_3d(v: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian over the last three axes of (N, 1, D, H, W), edges replicated.

    The 11×11×11 kernel is the outer product of three 1-D Gaussians, so one replicate pad followed
    by three valid 1-D convolutions equals the 3-D convolution of the padded volume.
    """
    k = g.numel()
    v = F.pad(v, (k // 2,) * 6, mode="replicate")
    v = F.conv3d(v, g.view(1, 1, k, 1, 1))
    v = F.conv3d(v, g.view(1, 1, 1, k, 1))
    return F.conv3d(v, g.view(1, 1, 1, 1, k))


def ssim3d(restored: Tensor, gt: Tensor) -> Tensor:
    """The official evaluation's "3-D SSIM" per image (Restormer-style, UCDIR's `_ssim_3d`).

    The image is treated as one C×H×W volume and filtered with an 11×11×11 Gaussian (σ = 1.5) with
    replicated edges, so the window also spans the colour channels; the score is the mean of the
    SSIM map over the whole volume (no valid-region crop). C1, C2 use data range 1.

    Args:
        restored: (B, C, H, W) in [0, 1].
        gt: (B, C, H, W) in [0, 1].

    Returns:
        (B,) 3-D SSIM.
    """
    if restored.shape != gt.shape:
        raise ValueError(f"shapes differ: {tuple(restored.shape)} vs {tuple(gt.shape)}")
    g = _gaussian_1d(SSIM_KERNEL, SSIM_SIGMA, restored.float())
    c1, c2 = _K1**2, _K2**2
    scores = []
    for x, y in zip(restored.float(), gt.float(), strict=True):
        # One volume and one statistic at a time: a 2120×1416 image stays near 150 MB per map.
        x, y = x[None, None], y[None, None]
        mu_x, mu_y = _blur_3d(x, g), _blur_3d(y, g)
        var_x = _blur_3d(x * x, g) - mu_x**2
        var_y = _blur_3d(y * y, g) - mu_y**2
        cov = _blur_3d(x * y, g) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        )
        scores.append(ssim_map.mean())
    return torch.stack(scores).to(restored.dtype)
