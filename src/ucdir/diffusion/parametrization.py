"""Conversions between the noise and the residual at a signal level gamma (x_t = γ·r0 + σ·ε,
σ = sqrt(1 − γ²)): used by every transform of a step's prediction (clamping, guidance).

Computed in float64 (float32 on MPS, which has none): at the last sampling steps γ ≈ 0.9999995,
and σ = sqrt(1 − γ²) from a float32 γ is off by several percent (1 − γ² cancels), which would
turn a clamp of the residual into a different step than the scheduler's own posterior. Pass
gamma in float64 (as `Sampler` does) to keep σ exact; the results have the dtype of `x_t`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def wide_dtype(like: Tensor) -> torch.dtype:
    """float64 for the level conversions (float32 on MPS, which has no float64)."""
    return torch.float32 if like.device.type == "mps" else torch.float64


def _levels(gamma: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    g = gamma.reshape(-1, 1, 1, 1).to(like.device, wide_dtype(like))
    return g, (1 - g * g).clamp_min(1e-30).sqrt()


def residual_from_eps(x_t: Tensor, gamma: Tensor, eps: Tensor) -> Tensor:
    """r̂0 = (x_t − σ·ε̂)/γ."""
    g, s = _levels(gamma, x_t)
    wide = g.dtype
    return ((x_t.to(wide) - s * eps.to(wide)) / g).to(x_t.dtype)


def eps_from_residual(x_t: Tensor, gamma: Tensor, r0: Tensor) -> Tensor:
    """ε = (x_t − γ·r0)/σ, the noise consistent with a residual estimate."""
    g, s = _levels(gamma, x_t)
    wide = g.dtype
    return ((x_t.to(wide) - g * r0.to(wide)) / s).to(x_t.dtype)


PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
"""What a denoiser's raw output is (diffusers' names): the noise ε, the residual r0 itself, or
v = γ·ε − σ·r0 (Salimans & Ho)."""


def check_prediction_type(kind: str) -> str:
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {kind!r}")
    return kind


def eps_from_prediction(x_t: Tensor, gamma: Tensor, out: Tensor, kind: str) -> Tensor:
    """The noise ε̂ implied by a raw network output of type `kind` at x_t, gamma."""
    if kind == "epsilon":
        return out
    if kind == "sample":
        return eps_from_residual(x_t, gamma, out)
    check_prediction_type(kind)
    g, s = _levels(gamma, x_t)
    wide = g.dtype
    return (g * out.to(wide) + s * x_t.to(wide)).to(x_t.dtype)  # ε = γ·v + σ·x_t


def prediction_target(r0: Tensor, eps: Tensor, gamma: Tensor, kind: str) -> Tensor:
    """The training target of a network whose output is of type `kind` (x_t = γ·r0 + σ·ε)."""
    if kind == "epsilon":
        return eps
    if kind == "sample":
        return r0
    check_prediction_type(kind)
    g = gamma.reshape(-1, 1, 1, 1).to(r0.dtype)
    return g * eps - (1 - g * g).sqrt() * r0
