"""The initial predictor u: the SID ("Learning to See in the Dark") UNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ucdir.models.layers import pad_to_multiple


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class InitialPredictor(nn.Module):
    """Lightweight UNet predicting the deterministic part x_init = u(lq) of the restoration.

    Widths 32-64-128-256-512 by default, two 3×3 convs with LeakyReLU(0.2) per level, 2×2
    max-pool down, 2×2 transposed-conv up with skip concatenation, 1×1 output conv; no output
    activation and no global residual (as the official code). 7,760,163 parameters for RGB -> RGB.

    Args:
        in_channels: 3 for RGB input; 4 for packed Bayer raw at half resolution, in which case the
            last conv emits 12 channels and a ×2 pixel shuffle returns full-resolution RGB.
        out_channels: output colour channels (3).
        width: width of the first level; the levels are width·(1, 2, 4, 8, 16) (32 = official).
        global_residual: predict a correction added to the input (RGB input only); off in the
            official configuration, on in the short CPU demo where it gives a useful x_init fast.
    """

    stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 32,
        global_residual: bool = False,
    ) -> None:
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (packed raw), got {in_channels!r}")
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels!r}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width!r}")
        if global_residual and (in_channels != out_channels):
            raise ValueError(
                "global_residual needs as many input as output channels, got "
                f"in_channels={in_channels!r}, out_channels={out_channels!r}"
            )
        self.global_residual = global_residual
        self.in_channels, self.out_channels = in_channels, out_channels
        self.upscale = 2 if in_channels == 4 else 1
        w = tuple(width * m for m in (1, 2, 4, 8, 16))
        self.down = nn.ModuleList(
            [_double_conv(cin, cout) for cin, cout in zip((in_channels, *w[:-1]), w, strict=True)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2) for i in (4, 3, 2, 1)]
        )
        self.dec = nn.ModuleList([_double_conv(2 * w[i - 1], w[i - 1]) for i in (4, 3, 2, 1)])
        self.out = nn.Conv2d(w[0], out_channels * self.upscale**2, 1)

    @property
    def receptive_radius(self) -> int:
        """Input px on each side that can reach one output pixel (an upper bound): at level i
        (scale 2^i) each 3×3 conv adds 2^i, each 2×2 max-pool and 2×2 transposed conv 2^i;
        levels are counted at the input's resolution (packed raw: at half the output's)."""
        levels = len(self.down)
        encoder = sum(2 * 2**i for i in range(levels)) + sum(2**i for i in range(levels - 1))
        decoder = sum(2**i + 2 * 2**i for i in range(levels - 1))
        return encoder + decoder

    def forward(self, lq: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H·s, W·s), s = 2 for packed raw else 1.

        Any H, W: padded to a multiple of 16 and cropped back.
        """
        if lq.ndim != 4 or lq.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (B, {self.in_channels}, H, W) input, got shape {tuple(lq.shape)}"
            )
        h, w = lq.shape[-2:]
        x = pad_to_multiple(lq, self.stride)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        x = self.out(x)
        if self.upscale > 1:
            x = F.pixel_shuffle(x, self.upscale)
        x = x[..., : h * self.upscale, : w * self.upscale]
        return x + lq if self.global_residual else x
