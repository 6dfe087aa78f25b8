"""Small building blocks shared by both networks: padding, norms, activations, embeddings."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["layer", "group", "none"]
Act = Literal["swish", "relu"]


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pads the bottom and right of `x` (B, C, H, W) up to the next multiple of `multiple`.

    Reflect padding (as the official code) where the image is large enough, replicate otherwise.
    Unlike the official code, an aligned input gets no padding at all (the official always adds
    1-32 px, +27% MACs at 256²). Crop back with `x[..., :H, :W]`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def make_norm(kind: Norm, channels: int, affine: bool = True) -> nn.Module:
    """The basic module's norm: "layer" = GroupNorm(1, C), i.e. LayerNorm over C·H·W with a
    per-channel affine (what the official code calls LayerNorm); "group" = GroupNorm(32, C) as in
    SR3 (fewer groups when C is small); "none" = identity."""
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=affine)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'layer', 'group' or 'none', got {kind!r}")


def make_act(kind: Act) -> nn.Module:
    """Swish (SiLU, the paper's choice) or ReLU."""
    if kind == "swish":
        return nn.SiLU()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"act must be 'swish' or 'relu', got {kind!r}")


class SimpleGate(nn.Module):
    """NAFNet's SimpleGate: split the channels in halves and multiply them (2N -> N)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class PositionalEncoding(nn.Module):
    """WaveGrad/SR3 sinusoidal embedding of a continuous level in (0, 1], not scaled.

    Args:
        dim: embedding width (even).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding width must be even, got {dim!r}")
        count = dim // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(count, dtype=torch.float32) / count)
        self.freqs: Tensor
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, level: Tensor) -> Tensor:
        """(B,) -> (B, dim)."""
        arg = level.to(self.freqs.dtype)[:, None] * self.freqs[None]
        return torch.cat([arg.sin(), arg.cos()], dim=1)
