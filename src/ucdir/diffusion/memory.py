"""Automatic tile size: the largest tile whose estimated peak memory fits a budget."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ucdir.diffusion.conditioning import make_cond
from ucdir.diffusion.patching import (
    DEFAULT_MAX_TILES,
    DEFAULT_PREDICTOR_MAX_PIXELS,
    Merge,
    PatchSplit,
    _TiledPredictor,
    check_predictor_tiling,
    min_stride,
)
from ucdir.diffusion.sampling import Cb, Gen, SamplerLike
from ucdir.types import Cond, EpsFn


class PeakTensorMemory(TorchDispatchMode):
    """Tracks the bytes of live tensors created while active and records the peak.

    Works on any device including "meta" (shapes only, no compute), so a network's activation
    memory at a large size can be measured for free. Views are not counted twice; allocator
    caching and kernel workspaces are ignored, so it is an estimate.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, Tensor) or t._is_view() or any(t is a for a in tree_leaves(args)):
                continue
            nbytes = t.numel() * t.element_size()
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, nbytes)
        return out


def peak_bytes(network: nn.Module, cond: Cond, size: int) -> int:
    """Estimated peak activation bytes of one no-grad forward of `network` (an eps predictor) on
    a size² input shaped like `cond`, measured on the meta device (nothing is computed)."""
    meta = {
        name: torch.empty_like(t, device="meta")
        for name, t in (*network.named_parameters(), *network.named_buffers())
    }
    b = cond.x_init.shape[0]

    def probe(t: Tensor) -> Tensor:
        return torch.empty(b, t.shape[1], size, size, device="meta", dtype=t.dtype)

    scalars = None if cond.scalars is None else torch.empty_like(cond.scalars, device="meta")
    sub = Cond(probe(cond.lq), probe(cond.x_init), scalars)
    gamma = torch.empty(b, device="meta", dtype=cond.x_init.dtype)
    with torch.no_grad(), PeakTensorMemory() as tracker:
        functional_call(network, meta, (probe(cond.x_init), gamma, sub))
    return tracker.peak


@dataclass(frozen=True)
class AutoPatchSplit(_TiledPredictor):
    """`PatchSplit` with the tile chosen from a memory budget for the network and image at hand.

    The peak activation memory of the noise predictor at a candidate tile is measured on the meta
    device (shapes only, free) and the tile is the largest multiple of `granularity` whose
    estimate, times `safety`, fits `max_memory_gb`. An image that fits whole is one tile.

    Args:
        max_memory_gb: activation-memory budget per network call.
        overlap, merge, batch_tiles: as `PatchSplit`.
        granularity: tile sizes are multiples of this (the network stride or more).
        safety: factor on the estimate for allocator overhead.
        predictor_max_pixels, predictor_tile, max_tiles: as `PatchSplit`.

    The smallest tile tried is the smallest multiple of `granularity` whose stride
    (tile − 2·overlap) passes `PatchSplit`'s minimum, max(8 px, tile / 4).
    """

    max_memory_gb: float = 4.0
    overlap: int = 32
    merge: Merge = "drop"
    batch_tiles: int = 1
    granularity: int = 32
    safety: float = 1.5
    predictor_max_pixels: int = DEFAULT_PREDICTOR_MAX_PIXELS
    predictor_tile: int = 1024
    max_tiles: int = DEFAULT_MAX_TILES

    def __post_init__(self) -> None:
        if self.max_memory_gb <= 0:
            raise ValueError(f"max_memory_gb must be > 0, got {self.max_memory_gb!r}")
        if self.overlap < 0 or self.granularity < 1:
            raise ValueError(
                f"need overlap >= 0 and granularity >= 1, got {self.overlap!r}, "
                f"{self.granularity!r}"
            )
        check_predictor_tiling(self.predictor_max_pixels, self.predictor_tile)

    def tile_for(self, network: nn.Module, cond: Cond) -> int:
        """The largest tile (px, a multiple of `granularity`, at least the smallest one whose
        stride passes `min_stride`) whose estimated peak memory fits the budget; the whole
        image's size when it all fits."""
        h, w = cond.x_init.shape[-2:]
        budget = self.max_memory_gb * 2**30 / self.safety
        g = self.granularity
        smallest = (2 * self.overlap // g + 1) * g
        while smallest - 2 * self.overlap < min_stride(smallest):
            smallest += g
        largest = max(smallest, -(-max(h, w) // g) * g)

        def fits(tile: int) -> bool:
            return peak_bytes(network, cond, tile) * self.batch_tiles <= budget

        lo, hi = smallest, largest  # binary search on multiples of g; memory grows with size
        if fits(hi):
            return hi
        while hi - lo > g:
            mid = (lo + hi) // (2 * g) * g
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def resolve(
        self, denoiser: EpsFn, lq: Tensor, scalars: Tensor | None, scale: int
    ) -> PatchSplit:
        """The concrete `PatchSplit` for this network and an input `lq` (in [−1, 1]) whose
        initial prediction is `scale` times its size.

        Raises:
            ValueError: the denoiser is no `nn.Module` (its memory cannot be measured).
        """
        if not isinstance(denoiser, nn.Module):
            raise ValueError("patch=auto measures the denoiser's memory: it must be an nn.Module")
        b, _, h, w = lq.shape
        probe = make_cond(lq, lq.new_zeros(b, 3, h * scale, w * scale), scalars)
        return PatchSplit(
            self.tile_for(denoiser, probe),
            self.overlap,
            self.merge,
            self.batch_tiles,
            self.predictor_max_pixels,
            self.predictor_tile,
            self.max_tiles,
        )

    def sample(
        self, sampler: SamplerLike, eps_fn: EpsFn, cond: Cond, generator: Gen, callback: Cb = None
    ) -> Tensor:
        raise TypeError("AutoPatchSplit samples through the PatchSplit `resolve` returns")
