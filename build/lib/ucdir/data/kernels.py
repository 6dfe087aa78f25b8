"""Blur kernels of the Real-ESRGAN degradation model: Gaussian family and circular sinc.

Written from the model's description (Wang et al., "Real-ESRGAN", ICCVW 2021, §3.1): a kernel of
odd size k on the grid {−k//2, …, k//2}², normalised to sum 1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

KernelShape = Literal["gaussian", "generalized", "plateau"]


def _grid(size: int) -> Tensor:
    """(size, size, 2) float64 (x, y) offsets from the kernel centre."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size!r}")
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def gaussian_family_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float,
    theta: float = 0.0,
    shape: KernelShape = "gaussian",
    beta: float = 1.0,
) -> Tensor:
    """Anisotropic Gaussian-family blur kernel.

    With Σ = R(θ) diag(σx², σy²) R(θ)ᵀ and q(p) = pᵀ Σ⁻¹ p, the kernel is proportional to
    exp(−q/2) (``gaussian``), exp(−q^β / 2) (``generalized``: β < 1 heavy, β > 1 flat-topped
    tails) or 1 / (q^β + 1) (``plateau``).

    Returns:
        (size, size) float32 summing to 1.
    """
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be positive, got {sigma_x!r}, {sigma_y!r}")
    grid = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    q = torch.einsum("ijk,kl,ijl->ij", grid, torch.linalg.inv(cov), grid)
    if shape == "gaussian":
        kernel = torch.exp(-0.5 * q)
    elif shape == "generalized":
        kernel = torch.exp(-0.5 * q.pow(beta))
    elif shape == "plateau":
        kernel = 1.0 / (q.pow(beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel shape {shape!r}")
    return (kernel / kernel.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """Circular low-pass (2-D sinc) kernel with cutoff frequency `cutoff` in (0, π] rad/px.

    k(r) ∝ ω J₁(ω r) / (2π r), with the limit ω² / (4π) at r = 0; it mimics ringing and
    overshoot artefacts.

    Returns:
        (size, size) float32 summing to 1.
    """
    if not 0 < cutoff <= math.pi:
        raise ValueError(f"sinc cutoff must lie in (0, pi], got {cutoff!r}")
    r = _grid(size).norm(dim=-1)
    safe = torch.where(r > 0, r, torch.ones_like(r))
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(r > 0, kernel, torch.full_like(r, cutoff**2 / (4 * math.pi)))
    return (kernel / kernel.sum()).float()
