"""The diffusion network's blocks: the basic module with its condition integration, attention,
and the resampling layers (SR3 layout)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ucdir.models.guidance import (
    AdaINIntegration,
    AdaptiveKernelGuidance,
    AdditiveIntegration,
    ConcatIntegration,
    ScalarGuidance,
    SpatialGuidance,
)
from ucdir.models.layers import Act, Norm, make_act, make_norm

Guide = Literal["initial", "degraded", "internal", "none"]
Integration = Literal["akgm", "add", "concat", "adain", "dvsr"]
GuideAt = Callable[[tuple[int, int]], Tensor]
"""Returns the spatial guide resized to a block's (H, W)."""

GUIDES: tuple[str, ...] = ("initial", "degraded", "internal", "none")
INTEGRATIONS: tuple[str, ...] = ("akgm", "add", "concat", "adain", "dvsr")


class BasicBlock(nn.Module):
    """Basic module + CIM (paper Fig. 1): Norm → Conv3×3 → Act → Norm → conditioned Conv3×3 → Act,
    plus a shortcut (1×1 conv when the width changes), added after the last activation.

    The second conv is where the conditions enter: with `integration="akgm"` it is the AKGM fed
    with M = G ⊙ S (G from the spatial guide, S from the condition embedding); "add", "concat" and
    "adain" feed the same M to the Table 4 alternatives; "dvsr" is the SR3/DvSR block (no M: the
    embedding is added per channel after the first conv and the guide is concatenated to the
    network input instead).

    Args:
        in_channels, out_channels: block widths.
        emb_dim: width of the shared condition embedding.
        kernels: N, kernel bases (and width of G, S).
        norm, act: the basic module's normalisation and activation.
        guide: source of the spatial branch; "internal" reads the block's own features, "none"
            drops the spatial branch (M = S).
        integration: how the conditions enter the second conv.
        guide_channels: channels of an image guide.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        kernels: int = 8,
        norm: Norm = "layer",
        act: Act = "swish",
        guide: Guide = "initial",
        integration: Integration = "akgm",
        guide_channels: int = 3,
    ) -> None:
        super().__init__()
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
        if integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {INTEGRATIONS}, got {integration!r}")
        self.guide, self.integration = guide, integration
        c = out_channels
        self.norm1 = make_norm(norm, in_channels)
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1)
        self.act = make_act(act)
        self.norm2 = make_norm(norm, c, affine=integration != "adain")
        self.shortcut = nn.Conv2d(in_channels, c, 1) if in_channels != c else nn.Identity()
        self.spatial: SpatialGuidance | None = None
        self.scalar: ScalarGuidance | None = None
        self.emb_proj: nn.Linear | None = None
        self.second: nn.Module
        if integration == "dvsr":
            if guide == "internal":
                raise ValueError(
                    "integration='dvsr' concatenates an image guide; guide='internal' "
                    "has no meaning there"
                )
            self.emb_proj = nn.Linear(emb_dim, c)
            self.second = nn.Conv2d(c, c, 3, padding=1)
            return
        self.scalar = ScalarGuidance(emb_dim, kernels)
        if guide != "none":
            self.spatial = SpatialGuidance(c if guide == "internal" else guide_channels, kernels)
        if integration == "akgm":
            self.second = AdaptiveKernelGuidance(c, kernels)
        else:
            cls = {
                "add": AdditiveIntegration,
                "concat": ConcatIntegration,
                "adain": AdaINIntegration,
            }[integration]
            self.second = cls(c, kernels)

    def forward(self, x: Tensor, emb: Tensor, guide_at: GuideAt) -> Tensor:
        """x (B, C_in, H, W), emb (B, w) -> (B, C_out, H, W)."""
        h = self.act(self.conv1(self.norm1(x)))
        if self.emb_proj is not None:
            h = self.second(self.norm2(h + self.emb_proj(emb)[:, :, None, None]))
            return self.act(h) + self.shortcut(x)
        assert self.scalar is not None
        m = self.scalar(emb)
        if self.spatial is not None:
            g = h if self.guide == "internal" else guide_at((h.shape[-2], h.shape[-1]))
            m = self.spatial(g) * m
        h = self.second(self.norm2(h), m)
        return self.act(h) + self.shortcut(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over all positions (SR3): GroupNorm(1) → 1×1 qkv (no bias) →
    softmax(QᵀK/√C)V → 1×1 out conv, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # contiguous (B, 1, HW, C) q, k, v: strided views make SDPA fall back to the math kernel,
        # which materialises the HW × HW score matrix (GBs at 1/8 of a 1024² tile)
        qkv = self.qkv(self.norm(x)).view(b, 3, 1, c, h * w).transpose(-1, -2).contiguous()
        q, k, v = qkv.unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class ResidualStage(nn.Module):
    """A basic block, optionally followed by self-attention."""

    def __init__(self, block: BasicBlock, attention: bool) -> None:
        super().__init__()
        self.block = block
        self.attn = SelfAttention(block.conv1.out_channels) if attention else None

    def forward(self, x: Tensor, emb: Tensor, guide_at: GuideAt) -> Tensor:
        x = self.block(x, emb, guide_at)
        return self.attn(x) if self.attn is not None else x


class Downsample(nn.Module):
    """Conv3×3, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2, then Conv3×3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
