"""Types shared across the package: the conditioning bundle and the noise-predictor interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor


class Cond(NamedTuple):
    """Spatial and scalar conditioning of one diffusion step; `PatchSplit` crops every field alike.

    Inside the diffusion every image is in [-1, 1] (the official scale); `restore()` and the
    objective convert from and to the [0, 1] images at the package's edges.

    Attributes:
        lq: (B, C_lq, H, W) degraded input in [-1, 1], at the size of x_t.
        x_init: (B, 3, H, W) initial prediction u(lq) in [-1, 1]; the default AKG guide.
        scalars: (B, K) auxiliary scalars (JPEG quality, exposure ratio, ...), each normalised
            by its task to about [0, 1]; None when the model uses none.
    """

    lq: Tensor
    x_init: Tensor
    scalars: Tensor | None = None


EpsFn = Callable[[Tensor, Tensor, Cond], Tensor]
"""(x_t (B, C, H, W) in [-1, 1]-ish, gamma (B,), cond) -> eps shaped like x_t."""


class PairBatch(NamedTuple):
    """One (collated) training or evaluation sample of every task.

    Attributes:
        lq: (B, C_lq, H_lq, W_lq) degraded input in [0, 1] (RGB, or packed Bayer raw at half size).
        gt: (B, 3, H, W) clean target in [0, 1].
        scalars: (B, K) auxiliary scalars normalised to about [0, 1]; K = 0 when the task has none.
    """

    lq: Tensor
    gt: Tensor
    scalars: Tensor
