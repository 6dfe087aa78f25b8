"""Conversions between the noise and the residual at a signal level gamma (x_t = γ·r0 + σ·ε,
σ = sqrt(1 − γ²)): used by every transform of a step's prediction (clamping, guidance)."""

from __future__ import annotations

from torch import Tensor


def _levels(gamma: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    g = gamma.view(-1, 1, 1, 1).to(like.dtype)
    return g, (1 - g**2).clamp_min(1e-12).sqrt()


def residual_from_eps(x_t: Tensor, gamma: Tensor, eps: Tensor) -> Tensor:
    """r̂0 = (x_t − σ·ε̂)/γ."""
    g, s = _levels(gamma, x_t)
    return (x_t - s * eps) / g


def eps_from_residual(x_t: Tensor, gamma: Tensor, r0: Tensor) -> Tensor:
    """ε = (x_t − γ·r0)/σ, the noise consistent with a residual estimate."""
    g, s = _levels(gamma, x_t)
    return (x_t - g * r0) / s
