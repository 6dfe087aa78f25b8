"""Fidelity–realness control at inference (DiffBIR's idea, our form): pull the low frequencies of
each step's predicted residual toward zero, so the result stays closer to the initial prediction
x_init in its coarse content while the diffusion keeps generating the fine detail."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ucdir.diffusion.parametrization import eps_from_residual, residual_from_eps
from ucdir.types import Cond, EpsFn


def gaussian_lowpass(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (replicate when too small)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    h, w = x.shape[-2:]
    mode = "reflect" if radius < h and radius < w else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def fidelity_guidance(eps_fn: EpsFn, scale: float, sigma: float = 4.0) -> EpsFn:
    """Wraps `eps_fn` so each step's residual estimate loses a share of its low frequencies.

    With r̂0 = (x_t − sqrt(1 − γ²)·ε̂)/γ and L = Gaussian low-pass of r̂0, the estimate becomes
    r̂0 − w·L with w = scale / (1 + scale) (0 = the paper's sampler, → 1 as scale → ∞), and the ε
    consistent with it is returned. Larger `scale` = closer to x_init (fidelity), smaller = more
    generated content (realness).

    Args:
        eps_fn: the noise predictor.
        scale: guidance scale ≥ 0.
        sigma: standard deviation (px) of the low-pass.
    """
    if scale < 0:
        raise ValueError(f"guidance must be >= 0, got {scale!r}")
    if scale == 0:
        return eps_fn
    weight = scale / (1 + scale)

    def guided(x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        r0 = residual_from_eps(x_t, gamma, eps_fn(x_t, gamma, cond))
        return eps_from_residual(x_t, gamma, r0 - weight * gaussian_lowpass(r0, sigma))

    return guided
