"""Full-reference fidelity metrics: PSNR, SSIM (torchmetrics' definition) and the official
"3-D SSIM".

All functions take batches (B, C, H, W) of images in [0, 1] and return one value per image (B,).
SSIM and 3-D SSIM are computed in horizontal strips with the Gaussian window's 5 px margin, so
their memory is bounded by the strip (`STRIP_VALUES`) rather than several full-size float maps
(a 16 MP pair needed over 14 GB in one piece); the result equals the whole-image one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

ColorSpace = Literal["rgb", "y"]

PSNR_CAP = 100.0
"""PSNR of an identical pair (MSE 0, i.e. infinite PSNR) in dB: finite, so that a set's mean and
its JSON stay valid; `Metrics` counts such pairs as `identical`."""

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
STRIP_VALUES = 1 << 22
"""Values (batch × channels × rows × width) of one SSIM strip: 16 MB per float map, so a 16 MP
pair peaks near 0.45 GB instead of 3.7 GB (as fast as one piece on a CPU)."""


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
    """PSNR in dB per image, data range 1 (torchmetrics): (B, C, H, W) x2 in [0, 1] -> (B,),
    capped at `PSNR_CAP` (an identical pair scores 100 dB, not inf)."""
    value = peak_signal_noise_ratio(restored, gt, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=PSNR_CAP)


def ssim(restored: Tensor, gt: Tensor, strip_rows: int | None = None) -> Tensor:
    """SSIM per image as torchmetrics' `structural_similarity_index_measure` defines it (11×11
    Gaussian window, σ = 1.5, data range 1), computed strip by strip in bounded memory.

    Args:
        restored: (B, C, H, W) in [0, 1], H and W over 5 px.
        gt: (B, C, H, W) in [0, 1].
        strip_rows: rows per strip; None: as many as fit `STRIP_VALUES`.

    Returns:
        (B,) SSIM: mean of the SSIM map over every pixel and channel, the image reflect-padded by
        5 px (torchmetrics' convention; skimage/BasicSR average the valid region instead).
    """
    _check_pair(restored, gt)
    b, c, h, w = restored.shape
    pad = SSIM_KERNEL // 2
    g = _gaussian_1d(SSIM_KERNEL, SSIM_SIGMA, restored)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, SSIM_KERNEL, SSIM_KERNEL)
    c1, c2 = _K1**2, _K2**2
    total = torch.zeros(b, dtype=torch.float64, device=restored.device)
    for start, stop in _strips(h, b * c * (w + 2 * pad), strip_rows):
        rows = _reflect(torch.arange(start - pad, stop + pad, device=restored.device), h)
        x, y = (F.pad(v.index_select(2, rows), (pad, pad, 0, 0), "reflect") for v in (restored, gt))
        mu_x, mu_y, xx, yy, xy = F.conv2d(
            torch.cat((x, y, x * x, y * y, x * y)), kernel, groups=c
        ).split(b)
        mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
        var_x, var_y = (xx - mu_xx).clamp(min=0.0), (yy - mu_yy).clamp(min=0.0)
        ssim_map = ((2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)) / (
            (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
        )
        total += ssim_map.sum(dim=(1, 2, 3), dtype=torch.float64)
    return (total / (c * h * w)).to(restored.dtype)


def _check_pair(restored: Tensor, gt: Tensor) -> None:
    if restored.shape != gt.shape or restored.ndim != 4:
        raise ValueError(
            f"need two (B, C, H, W) batches of one shape, got {tuple(restored.shape)} and "
            f"{tuple(gt.shape)}"
        )
    if min(restored.shape[-2:]) <= SSIM_KERNEL // 2:
        raise ValueError(
            f"SSIM needs images over {SSIM_KERNEL // 2} px on each side, got "
            f"{tuple(restored.shape[-2:])}"
        )


def _strips(height: int, values_per_row: int, strip_rows: int | None) -> list[tuple[int, int]]:
    """[start, stop) row ranges covering `height` rows, `strip_rows` (or what fits
    `STRIP_VALUES`) at a time."""
    rows = strip_rows if strip_rows is not None else max(1, STRIP_VALUES // values_per_row)
    if rows < 1:
        raise ValueError(f"strip_rows must be >= 1, got {strip_rows!r}")
    return [(a, min(a + rows, height)) for a in range(0, height, rows)]


def _reflect(index: Tensor, length: int) -> Tensor:
    """Row indices of a reflect padding (edge not repeated), as `F.pad(mode="reflect")`."""
    index = index.abs()
    return torch.where(index >= length, 2 * (length - 1) - index, index)


def _gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_3d(v: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian over the last three axes of (N, 1, D, H, W), edges replicated along D
    and W; along H the rows already hold their margin (replicated), so H shrinks by k − 1.

    The 11×11×11 kernel is the outer product of three 1-D Gaussians, so one replicate pad followed
    by three valid 1-D convolutions equals the 3-D convolution of the padded volume.
    """
    k = g.numel()
    v = F.pad(v, (k // 2, k // 2, 0, 0, k // 2, k // 2), mode="replicate")
    v = F.conv3d(v, g.view(1, 1, k, 1, 1))
    v = F.conv3d(v, g.view(1, 1, 1, k, 1))
    return F.conv3d(v, g.view(1, 1, 1, 1, k))


def ssim3d(restored: Tensor, gt: Tensor, strip_rows: int | None = None) -> Tensor:
    """The official evaluation's "3-D SSIM" per image (Restormer-style, UCDIR's `_ssim_3d`).

    The image is treated as one C×H×W volume and filtered with an 11×11×11 Gaussian (σ = 1.5) with
    replicated edges, so the window also spans the colour channels; the score is the mean of the
    SSIM map over the whole volume (no valid-region crop). C1, C2 use data range 1. Computed in
    strips of rows with a replicated 5-row margin (bounded memory, same result).

    Args:
        restored: (B, C, H, W) in [0, 1].
        gt: (B, C, H, W) in [0, 1].
        strip_rows: rows per strip; None: as many as fit `STRIP_VALUES`.

    Returns:
        (B,) 3-D SSIM.
    """
    if restored.shape != gt.shape:
        raise ValueError(f"shapes differ: {tuple(restored.shape)} vs {tuple(gt.shape)}")
    g = _gaussian_1d(SSIM_KERNEL, SSIM_SIGMA, restored.float())
    c1, c2 = _K1**2, _K2**2
    c, h, w = restored.shape[-3:]
    pad = SSIM_KERNEL // 2
    scores = []
    for x_all, y_all in zip(restored.float(), gt.float(), strict=True):
        total = torch.zeros((), dtype=torch.float64, device=restored.device)
        for start, stop in _strips(h, (c + 2 * pad) * (w + 2 * pad), strip_rows):
            rows = torch.arange(start - pad, stop + pad, device=restored.device).clamp(0, h - 1)
            x, y = (v.index_select(1, rows)[None, None] for v in (x_all, y_all))
            mu_x, mu_y = _blur_3d(x, g), _blur_3d(y, g)
            var_x = _blur_3d(x * x, g) - mu_x**2
            var_y = _blur_3d(y * y, g) - mu_y**2
            cov = _blur_3d(x * y, g) - mu_x * mu_y
            ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
                (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
            )
            total += ssim_map.sum(dtype=torch.float64)
        scores.append(total / (c * h * w))
    return torch.stack(scores).to(restored.dtype)
