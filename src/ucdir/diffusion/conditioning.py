"""Conditioning and scale: the [0, 1] ↔ [−1, 1] conversions and the `Cond` the networks get,
shared by training (the objectives) and inference (`restore`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ucdir.types import Cond

__all__ = ["Cond", "from_diffusion", "make_cond", "to_diffusion"]


def to_diffusion(image: Tensor) -> Tensor:
    """[0, 1] image -> [-1, 1], the scale of everything inside the diffusion."""
    return image * 2 - 1


def from_diffusion(image: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] image (not clamped)."""
    return (image + 1) / 2


def make_cond(lq: Tensor, x_init: Tensor, scalars: Tensor | None) -> Cond:
    """Conditioning from the degraded input and the initial prediction, both in [-1, 1].

    A packed-raw lq (half resolution) is brought to x_init's size by nearest upsampling so it can
    be concatenated to x_t; an empty (B, 0) scalar tensor becomes None.
    """
    if lq.shape[-2:] != x_init.shape[-2:]:
        lq = F.interpolate(lq, size=x_init.shape[-2:], mode="nearest")
    if scalars is not None and scalars.numel() == 0:
        scalars = None
    return Cond(lq, x_init, scalars)
