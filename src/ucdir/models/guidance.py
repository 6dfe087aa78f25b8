"""Conditional Integration Module (CIM) and Adaptive Kernel Guidance Module (AKGM), paper §3.2.

The CIM turns the spatial guide into G (B, N, H, W) and the scalar conditions into S (B, N); the
multi-source fusion weights are M = G ⊙ S (no softmax, as the official code). The AKGM uses M to
fuse N kernel bases per pixel (Eq. 2). The other `integration` choices of the paper's Table 4
(addition, concatenation, AdaIN) consume the same M in the place of the AKGM.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ucdir.models.layers import SimpleGate


class SpatialGuidance(nn.Module):
    """CIM spatial branch: guide -> Conv1×1(C_g -> 2N) -> SimpleGate -> Conv3×3(N -> N) = G.

    Args:
        guide_channels: channels of the guide (3 for an image, C for internal features).
        kernels: N, the number of kernel bases.
    """

    def __init__(self, guide_channels: int, kernels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(guide_channels, 2 * kernels, 1)
        self.gate = SimpleGate()
        self.mix = nn.Conv2d(kernels, kernels, 3, padding=1)

    def forward(self, guide: Tensor) -> Tensor:
        """(B, C_g, H, W), already at the block's resolution -> G (B, N, H, W)."""
        return self.mix(self.gate(self.proj(guide)))


class ScalarGuidance(nn.Module):
    """CIM scalar branch of one block: Linear(w -> N) -> Swish -> Linear(N -> N) = S.

    Args:
        emb_dim: width w of the shared condition embedding.
        kernels: N.
    """

    def __init__(self, emb_dim: int, kernels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(emb_dim, kernels), nn.SiLU(), nn.Linear(kernels, kernels)
        )

    def forward(self, emb: Tensor) -> Tensor:
        """(B, w) -> S (B, N, 1, 1)."""
        return self.net(emb)[:, :, None, None]


class AdaptiveKernelGuidance(nn.Module):
    """AKGM: a 3×3 conv whose kernel at pixel p is F(p) = Σ_b M_b(p)·W_b (paper Eq. 2).

    Each basis W_b is a grouped (N groups) C×C/N×3×3 kernel, so the cost is one dense conv
    (HW·9C² MACs). All bases are stored in one grouped conv with the official weight layout:
    output channel o = c·N + b holds basis b of output channel c (this keeps official checkpoints
    loadable). The basis biases are fused by M as well.

    Args:
        channels: C (divisible by `kernels`).
        kernels: N, the number of kernel bases.
    """

    def __init__(self, channels: int, kernels: int) -> None:
        super().__init__()
        if channels % kernels:
            raise ValueError(
                f"channels ({channels}) must be divisible by the number of kernel bases, "
                f"got kernels={kernels!r}"
            )
        self.channels, self.kernels = channels, kernels
        self.bases = nn.Conv2d(channels, channels * kernels, 3, padding=1, groups=kernels)

    def forward(self, h: Tensor, m: Tensor) -> Tensor:
        """h (B, C, H, W), M (B, N, H, W) or (B, N, 1, 1) -> (B, C, H, W) (channels-last memory)."""
        b, c, hh, ww = h.shape
        n = self.kernels
        # Channels-last: oneDNN's grouped conv is several times faster there (forward and
        # backward), and output channel c·N + b of pixel p is then at [p, c, b] of a free view.
        z = self.bases(h.contiguous(memory_format=torch.channels_last))
        z = z.permute(0, 2, 3, 1).reshape(b * hh * ww, c, n)
        weights = m.expand(b, n, hh, ww).permute(0, 2, 3, 1).reshape(b * hh * ww, n, 1)
        # Σ_b M_b(p) · basis_b(p) as one (C × N) · (N × 1) product per pixel: a batched matmul
        # never materialises the (B, H, W, C, N) product of a broadcast multiply and sum.
        out = torch.bmm(z, weights.to(z.dtype))
        return out.view(b, hh, ww, c).permute(0, 3, 1, 2)

    def basis_kernels(self) -> tuple[Tensor, Tensor]:
        """The N bases as dense kernels: W (N, C, C, 3, 3), zero outside each group; b (N, C)."""
        c, n = self.channels, self.kernels
        cg = c // n
        w = self.bases.weight.view(c, n, cg, 3, 3)  # [c, b] = weight of output channel c·N + b
        dense = w.new_zeros(n, c, c, 3, 3)
        for out_c in range(c):
            g = out_c // cg  # every basis of output channel c reads input group ⌊c / cg⌋
            dense[:, out_c, g * cg : (g + 1) * cg] = w[out_c]
        bias = self.bases.bias
        if bias is None:  # pragma: no cover - the bases are built with a bias
            raise ValueError("AKGM bases have no bias")
        return dense, bias.view(c, n).t()


class AdditiveIntegration(nn.Module):
    """Table 4 "Addition": project M to C channels, add it to the features, static 3×3 conv."""

    def __init__(self, channels: int, kernels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(kernels, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor, m: Tensor) -> Tensor:
        """Normalised h (B, C, H, W), M (B, N, H|1, W|1) -> (B, C, H, W)."""
        return self.conv(h + self.proj(m))


class ConcatIntegration(nn.Module):
    """Table 4 "Concatenation": project M to C channels and concatenate (3×3 conv 2C -> C)."""

    def __init__(self, channels: int, kernels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(kernels, channels, 1)
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, h: Tensor, m: Tensor) -> Tensor:
        """Normalised h (B, C, H, W), M (B, N, H|1, W|1) -> (B, C, H, W)."""
        cond = self.proj(m).expand(-1, -1, *h.shape[-2:])
        return self.conv(torch.cat([h, cond], dim=1))


class AdaINIntegration(nn.Module):
    """Table 4 "AdaIN": features normalised without affine are scaled and shifted by amounts
    predicted from M (spatially varying when M is), then a static 3×3 conv."""

    def __init__(self, channels: int, kernels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(kernels, 2 * channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor, m: Tensor) -> Tensor:
        """h normalised without affine (B, C, H, W), M (B, N, H|1, W|1) -> (B, C, H, W)."""
        scale, shift = self.proj(m).chunk(2, dim=1)
        return self.conv(h * (1 + scale) + shift)
