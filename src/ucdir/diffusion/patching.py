"""Inter-step patch splitting (paper §3.3) and the naive baseline it is compared with (Fig. 6).

`PatchSplit` wraps the noise predictor: at every sampling step the full x_t and every spatial
field of the conditioning are cut into overlapping tiles, each tile is denoised, and the tiles are
merged (margins dropped, as the paper, or feathered); the scheduler step and its noise run on the
whole image. `NaivePatchSplit` cuts the image once and samples each tile from start to finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ucdir.types import Cond, EpsFn

Merge = Literal["drop", "feather"]


class Span(NamedTuple):
    """One tile along an axis: the tile covers [start, stop); it owns the core [core_start,
    core_stop) in a "drop" merge (the cores partition the axis)."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Tiles of `tile` px along an axis of `length` px; inner margins of at least `overlap` px.

    Tile starts step by tile − 2·overlap; the last tile is shifted back to end at the border, so
    every tile has the full size (or the whole axis when it is shorter than a tile).
    """
    if length <= tile:
        return [Span(0, length, 0, length)]
    step = tile - 2 * overlap
    n = math.ceil((length - tile) / step) + 1
    starts = [min(k * step, length - tile) for k in range(n)]
    out, core_start = [], 0
    for k, a in enumerate(starts):
        core_stop = length if k == n - 1 else a + tile - overlap
        out.append(Span(a, a + tile, core_start, core_stop))
        core_start = core_stop
    return out


def _ramp(span: Span, length: int, overlap: int, device: torch.device) -> Tensor:
    """Feather weight along one axis: zero over the outer half of each inner margin, then a
    linear ramp to 1 over the inner half (so a predictor whose receptive field is under
    overlap/2 px merges exactly)."""
    n = span.stop - span.start
    pos = torch.arange(n, device=device, dtype=torch.float32)
    half = overlap / 2
    w = torch.ones(n, device=device)
    if span.start > 0:
        w = torch.minimum(w, ((pos - half + 1) / (half + 1)).clamp(0, 1))
    if span.stop < length:
        w = torch.minimum(w, ((n - 1 - pos - half + 1) / (half + 1)).clamp(0, 1))
    return w


@dataclass(frozen=True)
class PatchSplit:
    """Inter-step patch splitting around a noise predictor.

    Args:
        tile: tile size in px (square).
        overlap: margin in px dropped (or feathered) on each inner side of a tile; adjacent
            tiles overlap by 2·overlap.
        merge: "drop" (the paper) or "feather" (weighted blend over the overlap).
        batch_tiles: tiles sent through the network at once (more = faster on a GPU, more memory).
    """

    tile: int = 256
    overlap: int = 32
    merge: Merge = "drop"
    batch_tiles: int = 1

    def __post_init__(self) -> None:
        if self.overlap < 0 or self.tile <= 2 * self.overlap:
            raise ValueError(
                f"need 0 <= overlap < tile / 2, got tile={self.tile!r}, overlap={self.overlap!r}"
            )
        if self.merge not in ("drop", "feather"):
            raise ValueError(f"merge must be 'drop' or 'feather', got {self.merge!r}")
        if self.batch_tiles < 1:
            raise ValueError(f"batch_tiles must be >= 1, got {self.batch_tiles!r}")

    def boxes(self, height: int, width: int) -> list[tuple[Span, Span]]:
        """(row span, column span) of every tile of a height × width image, row-major."""
        return [
            (r, c)
            for r in spans(height, self.tile, self.overlap)
            for c in spans(width, self.tile, self.overlap)
        ]

    def map(self, fn: Callable[[Tensor], Tensor], x: Tensor, scale: int = 1) -> Tensor:
        """Applies a spatial network tile by tile (used for u(lq) on large inputs).

        Args:
            fn: (B, C, h, w) -> (B, C', h·scale, w·scale).
            x: (B, C, H, W).
            scale: output/input size ratio of `fn` (2 for the packed-raw predictor).
        """
        h, w = x.shape[-2:]
        boxes = self.boxes(h, w)
        if len(boxes) == 1:
            return fn(x)
        return self._merge(boxes, h, w, lambda crops: [fn(c) for c in crops], [x], scale)

    def wrap(self, eps_fn: EpsFn) -> EpsFn:
        """The tiled noise predictor: same signature, tiles cut and merged at every call."""

        def tiled(x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
            h, w = x_t.shape[-2:]
            boxes = self.boxes(h, w)
            if len(boxes) == 1:
                return eps_fn(x_t, gamma, cond)
            spatial = [f for f in cond if f is not None and f.ndim == 4]
            b = x_t.shape[0]

            def run(crops: list[Tensor]) -> list[Tensor]:
                # crops = [x_t tile, then one tile of each spatial cond field] per box, batched
                n_fields = 1 + len(spatial)
                outs = []
                per_box = [crops[i : i + n_fields] for i in range(0, len(crops), n_fields)]
                for i in range(0, len(per_box), self.batch_tiles):
                    group = per_box[i : i + self.batch_tiles]
                    fields = [torch.cat([g[j] for g in group]) for j in range(n_fields)]
                    sub = _crop_cond(cond, fields[1:], len(group))
                    eps = eps_fn(fields[0], gamma.repeat(len(group)), sub)
                    outs.extend(eps.split(b))
                return outs

            return self._merge(boxes, h, w, run, [x_t, *spatial], 1)

        return tiled

    def _merge(
        self,
        boxes: list[tuple[Span, Span]],
        h: int,
        w: int,
        run: Callable[[list[Tensor]], list[Tensor]],
        fields: list[Tensor],
        scale: int,
    ) -> Tensor:
        crops = [f[..., r.start : r.stop, c.start : c.stop] for r, c in boxes for f in fields]
        outs = run(crops)
        first = outs[0]
        out = first.new_zeros(*first.shape[:2], h * scale, w * scale)
        total = first.new_zeros(1, 1, h * scale, w * scale) if self.merge == "feather" else None
        for (r, c), tile in zip(boxes, outs, strict=True):
            if total is None:
                rs = slice((r.core_start - r.start) * scale, (r.core_stop - r.start) * scale)
                cs = slice((c.core_start - c.start) * scale, (c.core_stop - c.start) * scale)
                out[
                    ...,
                    r.core_start * scale : r.core_stop * scale,
                    c.core_start * scale : c.core_stop * scale,
                ] = tile[..., rs, cs]
            else:
                wr = _ramp(r, h, self.overlap, tile.device).repeat_interleave(scale)
                wc = _ramp(c, w, self.overlap, tile.device).repeat_interleave(scale)
                weight = (wr[:, None] * wc[None, :]).to(tile.dtype)
                region = (
                    ...,
                    slice(r.start * scale, r.stop * scale),
                    slice(c.start * scale, c.stop * scale),
                )
                out[region] += tile * weight
                total[region] += weight
        return out if total is None else out / total


def _crop_cond(cond: Cond, spatial_tiles: list[Tensor], repeats: int) -> Cond:
    """Rebuilds a Cond from its tiled spatial fields; non-spatial fields are repeated."""
    it = iter(spatial_tiles)
    fields: list[Tensor | None] = []
    for f in cond:
        if f is not None and f.ndim == 4:
            fields.append(next(it))
        elif f is not None:
            fields.append(f.repeat(repeats, *([1] * (f.ndim - 1))))
        else:
            fields.append(None)
    lq, x_init, scalars = fields
    assert lq is not None and x_init is not None
    return Cond(lq, x_init, scalars)


def crop_cond(cond: Cond, rows: slice, cols: slice) -> Cond:
    """The same window of every spatial field of `cond` (scalars unchanged)."""
    return cond._replace(lq=cond.lq[..., rows, cols], x_init=cond.x_init[..., rows, cols])


@dataclass(frozen=True)
class NaivePatchSplit:
    """The common baseline of the paper's Fig. 6: cut the image once into the same tiles, sample
    each tile from start to finish with its own noise, paste the tiles (margins dropped)."""

    tile: int = 256
    overlap: int = 32

    def __post_init__(self) -> None:
        PatchSplit(self.tile, self.overlap)  # same validation

    def boxes(self, height: int, width: int) -> list[tuple[Span, Span]]:
        return PatchSplit(self.tile, self.overlap).boxes(height, width)
