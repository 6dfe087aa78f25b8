"""How `restore` cuts an image (`Tiling`): whole (`WholeImage`), inter-step patch splitting
(paper §3.3, `PatchSplit`) and the naive baseline it is compared with (Fig. 6, `NaivePatchSplit`);
`ucdir.diffusion.memory.AutoPatchSplit` resolves to a `PatchSplit` for the image at hand.

`PatchSplit` wraps the noise predictor: at every sampling step the full x_t and every spatial
field of the conditioning are cut into overlapping tiles, each tile is denoised, and the tiles are
merged (margins dropped, as the paper, or feathered); the scheduler step and its noise run on the
whole image. `NaivePatchSplit` cuts the image once and samples each tile from start to finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ucdir.diffusion.sampling import Cb, Gen, SamplerLike
from ucdir.types import Cond, EpsFn

Merge = Literal["drop", "feather"]

MIN_STRIDE = 8
"""Smallest tile stride (tile − 2·overlap, px): below it, and below tile / 4, the tiles repeat
the same pixels so often that a restoration practically never finishes (66/32 gives 2 px)."""

DEFAULT_MAX_TILES = 10_000
"""Most tiles per image and call: a 200 MP image at the default 256/32 tiling makes ~5,500."""

DEFAULT_PREDICTOR_MAX_PIXELS = 8_388_608
"""The initial predictor runs whole up to 8 MP (a 4K frame tiles; SID's 2120×1416 runs whole)."""


class Predictor(Protocol):
    """What `map_predictor` needs of the initial predictor (`InitialPredictor` has it all)."""

    stride: int
    receptive_radius: int

    def __call__(self, lq: Tensor) -> Tensor: ...


class Tiling(Protocol):
    """What `restore` needs of a tiling: the initial prediction and the sampling of the residual,
    each over the whole image or in tiles. `resolve` turns a tiling that depends on the network
    and image (`AutoPatchSplit`) into a concrete one; the others return themselves."""

    def resolve(
        self, denoiser: EpsFn, lq: Tensor, scalars: Tensor | None, scale: int
    ) -> Tiling: ...

    def predict(self, predictor: nn.Module, lq: Tensor) -> Tensor: ...

    def sample(
        self, sampler: SamplerLike, eps_fn: EpsFn, cond: Cond, generator: Gen, callback: Cb = None
    ) -> Tensor: ...


class WholeImage:
    """No tiling: u(lq) and every sampler step on the whole image (`patch=none`)."""

    def resolve(
        self, denoiser: EpsFn, lq: Tensor, scalars: Tensor | None, scale: int
    ) -> WholeImage:
        return self

    def predict(self, predictor: nn.Module, lq: Tensor) -> Tensor:
        return predictor(lq)

    def sample(
        self, sampler: SamplerLike, eps_fn: EpsFn, cond: Cond, generator: Gen, callback: Cb = None
    ) -> Tensor:
        x_T = sampler.initial_noise(tuple(cond.x_init.shape), cond.x_init, generator)
        return sampler(eps_fn, x_T, cond, generator=generator, callback=callback)


class _TiledPredictor:
    """u(lq) whole up to `predictor_max_pixels`, above in `predictor_tile` tiles with margins of
    the predictor's receptive field (never with the denoiser's small overlap): the same result."""

    predictor_max_pixels: int
    predictor_tile: int

    def resolve(self, denoiser: EpsFn, lq: Tensor, scalars: Tensor | None, scale: int) -> Tiling:
        return self  # type: ignore[return-value]

    def predict(self, predictor: nn.Module, lq: Tensor) -> Tensor:
        return map_predictor(
            predictor,  # type: ignore[arg-type]
            lq,
            max_pixels=self.predictor_max_pixels,
            tile=self.predictor_tile,
            scale=int(getattr(predictor, "upscale", 1)),
        )


def min_stride(tile: int) -> int:
    """The smallest stride (tile − 2·overlap) allowed for `tile`: max(8 px, tile / 4)."""
    return max(MIN_STRIDE, -(-tile // 4))


def check_tiling(tile: int, overlap: int) -> None:
    """Refuses a tile / overlap pair with a stride under `min_stride`, naming what to set."""
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(
            f"need 0 <= overlap < tile / 2, got patch.tile={tile!r}, patch.overlap={overlap!r}"
        )
    stride, least = tile - 2 * overlap, min_stride(tile)
    if stride < least:
        raise ValueError(
            f"patch.tile={tile} with patch.overlap={overlap} steps by a stride of {stride} px "
            f"(tile − 2·overlap); at least max({MIN_STRIDE}, tile / 4) = {least} px is needed, "
            "else the same pixels are denoised over and over (it would practically never "
            f"finish): set patch.overlap={(tile - least) // 2} or less, or patch.tile="
            f"{_smallest_tile(overlap)} or more"
        )


def _smallest_tile(overlap: int) -> int:
    """The smallest tile whose stride with `overlap` passes `check_tiling`."""
    tile = 2 * overlap + MIN_STRIDE
    while tile - 2 * overlap < min_stride(tile):
        tile += 1
    return tile


def check_predictor_tiling(max_pixels: int, tile: int) -> None:
    """Validates the `predictor_*` settings shared by every tiling config."""
    if max_pixels < 1 or tile < 1:
        raise ValueError(
            f"predictor_max_pixels and predictor_tile must be positive, got {max_pixels!r}, "
            f"{tile!r}"
        )


def map_predictor(
    predictor: Predictor, lq: Tensor, *, max_pixels: int, tile: int, scale: int = 1
) -> Tensor:
    """u(lq), whole when it has at most `max_pixels` pixels, else tile by tile with the same result.

    Tiles have cores of `tile` px (rounded up to the predictor's stride) and margins of its
    receptive radius (rounded up to the stride), and every tile starts on the stride grid, so
    each kept pixel sees the same input and the same pooling grid as in the whole-image pass.

    Args:
        predictor: (B, C, h, w) -> (B, C', h·scale, w·scale), with `stride` and
            `receptive_radius` (px of input that can reach an output pixel).
        lq: (B, C, H, W) input in the predictor's range.
        max_pixels: largest H·W run whole.
        tile: core tile side (px) on larger inputs.
        scale: output/input size ratio (2 for the packed-raw predictor).
    """
    h, w = lq.shape[-2:]
    if h * w <= max_pixels:
        return predictor(lq)
    stride = int(getattr(predictor, "stride", 0))
    radius = getattr(predictor, "receptive_radius", None)
    if stride < 1 or radius is None:
        raise ValueError(
            f"a {h}×{w} input is over patch.predictor_max_pixels={max_pixels}, but the predictor "
            f"{type(predictor).__name__} declares no stride/receptive_radius to tile it exactly; "
            "raise patch.predictor_max_pixels"
        )
    core = -(-tile // stride) * stride
    margin = -(-int(radius) // stride) * stride

    def axis(length: int) -> list[tuple[int, int, int, int]]:
        out = []
        for a in range(0, length, core):
            b = min(a + core, length)
            out.append((max(0, a - margin), min(length, b + margin), a, b))
        return out

    result: Tensor | None = None
    for r0, r1, rc0, rc1 in axis(h):
        for c0, c1, cc0, cc1 in axis(w):
            part = predictor(lq[..., r0:r1, c0:c1])
            if result is None:
                result = part.new_empty(*part.shape[:2], h * scale, w * scale)
            result[..., rc0 * scale : rc1 * scale, cc0 * scale : cc1 * scale] = part[
                ...,
                (rc0 - r0) * scale : (rc1 - r0) * scale,
                (cc0 - c0) * scale : (cc1 - c0) * scale,
            ]
    assert result is not None
    return result


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


def tile_boxes(
    height: int, width: int, tile: int, overlap: int, max_tiles: int
) -> list[tuple[Span, Span]]:
    """(row span, column span) of every tile of a height × width image, row-major; refuses more
    than `max_tiles` tiles before any is listed."""
    rows, cols = spans(height, tile, overlap), spans(width, tile, overlap)
    if len(rows) * len(cols) > max_tiles:
        stride = tile - 2 * overlap
        raise ValueError(
            f"a {width}×{height} image at patch.tile={tile} patch.overlap={overlap} (stride "
            f"{stride} px) makes {len(rows)}×{len(cols)} = {len(rows) * len(cols):,} tiles, over "
            f"patch.max_tiles={max_tiles:,}: set a larger patch.tile (e.g. "
            f"{_tile_for_count(height, width, overlap, max_tiles)}), patch=auto, or raise "
            "patch.max_tiles"
        )
    return [(r, c) for r in rows for c in cols]


def _tile_for_count(height: int, width: int, overlap: int, max_tiles: int) -> int:
    """A tile (multiple of 32) with `overlap` that makes at most `max_tiles` tiles."""
    tile = max(32, -(-_smallest_tile(overlap) // 32) * 32)
    while len(spans(height, tile, overlap)) * len(spans(width, tile, overlap)) > max_tiles:
        tile *= 2
    return tile


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
class PatchSplit(_TiledPredictor):
    """Inter-step patch splitting around a noise predictor.

    Args:
        tile: tile size in px (square).
        overlap: margin in px dropped (or feathered) on each inner side of a tile; adjacent
            tiles overlap by 2·overlap.
        merge: "drop" (the paper) or "feather" (weighted blend over the overlap).
        batch_tiles: tiles sent through the network at once (more = faster on a GPU, more memory).
        predictor_max_pixels: the initial predictor runs on the whole input up to this many
            pixels (its result is then exact); above, in `predictor_tile` tiles with margins of
            its receptive field (`map_predictor`), which gives the same result.
        predictor_tile: core tile of the predictor on larger inputs (px, multiple of its stride).
        max_tiles: most tiles an image may make; a larger count is refused (with the tile to
            set instead) before anything is computed.

    The stride tile − 2·overlap must be at least max(8 px, tile / 4) (`min_stride`): 66/32
    would step by 2 px and practically never finish.
    """

    tile: int = 256
    overlap: int = 32
    merge: Merge = "drop"
    batch_tiles: int = 1
    predictor_max_pixels: int = DEFAULT_PREDICTOR_MAX_PIXELS
    predictor_tile: int = 1024
    max_tiles: int = DEFAULT_MAX_TILES

    def __post_init__(self) -> None:
        check_predictor_tiling(self.predictor_max_pixels, self.predictor_tile)
        check_tiling(self.tile, self.overlap)
        if self.max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {self.max_tiles!r}")
        if self.merge not in ("drop", "feather"):
            raise ValueError(f"merge must be 'drop' or 'feather', got {self.merge!r}")
        if self.batch_tiles < 1:
            raise ValueError(f"batch_tiles must be >= 1, got {self.batch_tiles!r}")

    def boxes(self, height: int, width: int) -> list[tuple[Span, Span]]:
        """(row span, column span) of every tile of a height × width image, row-major.

        Raises:
            ValueError: the image would make more than `max_tiles` tiles (naming the numbers).
        """
        return tile_boxes(height, width, self.tile, self.overlap, self.max_tiles)

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

    def sample(
        self, sampler: SamplerLike, eps_fn: EpsFn, cond: Cond, generator: Gen, callback: Cb = None
    ) -> Tensor:
        """The sampler's whole trajectory on the whole image, every network call tiled."""
        x_T = sampler.initial_noise(tuple(cond.x_init.shape), cond.x_init, generator)
        return sampler(self.wrap(eps_fn), x_T, cond, generator=generator, callback=callback)

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
class NaivePatchSplit(_TiledPredictor):
    """The common baseline of the paper's Fig. 6: cut the image once into the same tiles, sample
    each tile from start to finish with its own noise, paste the tiles (margins dropped)."""

    tile: int = 256
    overlap: int = 32
    predictor_max_pixels: int = DEFAULT_PREDICTOR_MAX_PIXELS
    predictor_tile: int = 1024
    max_tiles: int = DEFAULT_MAX_TILES

    def __post_init__(self) -> None:
        PatchSplit(self.tile, self.overlap, max_tiles=self.max_tiles)  # same validation
        check_predictor_tiling(self.predictor_max_pixels, self.predictor_tile)

    def boxes(self, height: int, width: int) -> list[tuple[Span, Span]]:
        return tile_boxes(height, width, self.tile, self.overlap, self.max_tiles)

    def sample(
        self, sampler: SamplerLike, eps_fn: EpsFn, cond: Cond, generator: Gen, callback: Cb = None
    ) -> Tensor:
        """Each tile sampled from start to finish with its own noise, cores pasted (no
        progress callback: the tiles' trajectories are not the image's)."""
        b, _, h, w = cond.x_init.shape
        out = cond.x_init.new_zeros(b, cond.x_init.shape[1], h, w)
        for r, c in self.boxes(h, w):
            sub = crop_cond(cond, slice(r.start, r.stop), slice(c.start, c.stop))
            x_T = sampler.initial_noise(tuple(sub.x_init.shape), sub.x_init, generator)
            tile = sampler(eps_fn, x_T, sub, generator=generator)
            out[..., r.core_start : r.core_stop, c.core_start : c.core_stop] = tile[
                ...,
                r.core_start - r.start : r.core_stop - r.start,
                c.core_start - c.start : c.core_stop - c.start,
            ]
        return out
