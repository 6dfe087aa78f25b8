"""The conditional diffusion network f: an SR3-layout UNet built from the UCDIR basic module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ucdir.diffusion.parametrization import check_prediction_type, eps_from_prediction
from ucdir.models.blocks import (
    BasicBlock,
    Downsample,
    Guide,
    Integration,
    ResidualStage,
    Upsample,
)
from ucdir.models.layers import Act, Norm, PositionalEncoding, pad_to_multiple
from ucdir.types import Cond


class ConditionEmbedding(nn.Module):
    """Shared scalar-condition embedding: sinusoidal PE(gamma) [+ Linear(PE of each auxiliary
    scalar)] -> Linear(w, 4w) -> Swish -> Linear(4w, w). Every block reads its output.

    Args:
        dim: w.
        num_scalars: K auxiliary scalars; their embeddings are added to PE(gamma).
    """

    def __init__(self, dim: int, num_scalars: int = 0) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.pe = PositionalEncoding(dim)
        self.aux = nn.Linear(num_scalars * dim, dim) if num_scalars else None
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))

    def forward(self, gamma: Tensor, scalars: Tensor | None) -> Tensor:
        """gamma (B,), scalars (B, K) or None -> (B, w)."""
        emb = self.pe(gamma)
        if self.aux is not None:
            if scalars is None or scalars.ndim != 2 or scalars.shape[1] != self.num_scalars:
                got = None if scalars is None else tuple(scalars.shape)
                raise ValueError(
                    f"this network expects {self.num_scalars} auxiliary scalars per sample as a "
                    f"(B, {self.num_scalars}) tensor in cond.scalars, got {got}"
                )
            b = scalars.shape[0]
            emb = emb + self.aux(self.pe(scalars.reshape(-1)).view(b, -1).to(emb.dtype))
        return self.mlp(emb)


class ConditionalUNet(nn.Module):
    """Predicts the noise in a noisy residual x_t, conditioned on lq, gamma, a guide and scalars.

    SR3 layout (official defaults): Conv3×3 in; per level `blocks` basic blocks (+1 in the decoder,
    each reading a skip); Conv3×3-stride-2 down, nearest+Conv3×3 up; self-attention at the levels
    in `attn_levels` and in the first mid block; GroupNorm(1) → Swish → Dropout → Conv3×3 out.
    The network input is concat(lq, x_t). Every block receives the condition embedding and the
    spatial guide (Adaptive Kernel Guidance). 97,354,699 parameters with the defaults.

    Args:
        channels: channels of x_t and of the predicted noise (3).
        lq_channels: channels of the degraded image concatenated to x_t (3).
        width: base width w.
        mults: width multiplier per level; the stride is 2**(len(mults) - 1).
        blocks: basic blocks per encoder level.
        attn_levels: level indices (0 = full resolution) with self-attention; 3 = 1/8.
        mid_attn: self-attention after the first mid block.
        kernels: N, kernel bases per AKGM.
        norm, act: the basic module's normalisation ("layer" = GroupNorm(1)) and activation.
        guide: spatial guide: "initial" = x_init, "degraded" = lq, "internal" = each block's own
            features, "none" = no spatial branch.
        integration: "akgm" (paper) or the Table 4 alternatives "add", "concat", "adain", "dvsr".
        aux_scalars: names of the auxiliary scalars read from `cond.scalars`, in column order.
        dropout: dropout before the output conv.
        prediction_type: what the last conv emits (diffusers' names): "epsilon" (the paper),
            "sample" (the residual r0 itself) or "v_prediction"; `forward` always returns ε
            (converted), `predict` the raw output the objective trains.
    """

    def __init__(
        self,
        channels: int = 3,
        lq_channels: int = 3,
        width: int = 64,
        mults: tuple[int, ...] = (1, 2, 4, 8, 8),
        blocks: int = 2,
        attn_levels: tuple[int, ...] = (3,),
        mid_attn: bool = True,
        kernels: int = 8,
        norm: Norm = "layer",
        act: Act = "swish",
        guide: Guide = "initial",
        integration: Integration = "akgm",
        aux_scalars: tuple[str, ...] = (),
        dropout: float = 0.1,
        prediction_type: str = "epsilon",
    ) -> None:
        super().__init__()
        self.prediction_type = check_prediction_type(prediction_type)
        if width < 1 or width % 2:
            raise ValueError(f"width must be a positive even number, got {width!r}")
        if not mults or any(m < 1 for m in mults):
            raise ValueError(f"mults must be positive integers, got {mults!r}")
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks!r}")
        if any(not 0 <= lvl < len(mults) for lvl in attn_levels):
            raise ValueError(
                f"attn_levels must index mults (0..{len(mults) - 1}), got {attn_levels!r}"
            )
        self.channels, self.lq_channels = channels, lq_channels
        self.guide, self.integration = guide, integration
        self.aux_scalars = tuple(aux_scalars)
        self.stride = 2 ** (len(mults) - 1)
        concat_guide = integration == "dvsr" and guide in ("initial", "degraded")
        guide_channels = lq_channels if guide == "degraded" else channels
        in_channels = lq_channels + channels + (guide_channels if concat_guide else 0)

        self.embed = ConditionEmbedding(width, len(self.aux_scalars))

        def stage(cin: int, cout: int, attention: bool) -> ResidualStage:
            block = BasicBlock(
                cin, cout, width, kernels, norm, act, guide, integration, guide_channels
            )
            return ResidualStage(block, attention)

        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [width], width
        for lvl, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(stage(ch, width * mult, lvl in attn_levels))
                ch = width * mult
                skips.append(ch)
            if lvl != len(mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.mid = nn.ModuleList([stage(ch, ch, mid_attn), stage(ch, ch, False)])
        self.up = nn.ModuleList()
        for lvl, mult in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(stage(ch + skips.pop(), width * mult, lvl in attn_levels))
                ch = width * mult
            if lvl:
                self.up.append(Upsample(ch))
        self.head = nn.Sequential(
            nn.GroupNorm(1, ch),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(ch, channels, 3, padding=1),
        )

    def forward(self, x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        """Predicts eps (the raw output of `predict` converted, for the other prediction types;
        pass gamma in float64, as the sampler does, for an exact conversion near γ = 1)."""
        out = self.predict(x_t, gamma, cond)
        return eps_from_prediction(x_t, gamma, out, self.prediction_type)

    def predict(self, x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        """The network's raw output: eps, r0 or v (see `prediction_type`).

        Args:
            x_t: (B, channels, H, W) noisy residual, in the diffusion's [-1, 1] scale.
            gamma: (B,) (or (B, 1), or one value for all) signal level sqrt(alpha_bar) in (0, 1].
            cond: lq (B, lq_channels, H, W) and x_init (B, 3, H, W) in the diffusion's
                [-1, 1] scale (as `make_cond` builds them from [0, 1] images), scalars (B, K).

        Returns:
            (B, channels, H, W); any H, W (padded to a multiple of the stride, cropped back).
        """
        b, _, h, w = x_t.shape
        if cond.lq.shape[0] != b or cond.lq.shape[-2:] != x_t.shape[-2:]:
            raise ValueError(
                f"lq {tuple(cond.lq.shape)} must match x_t {tuple(x_t.shape)} in batch and size"
            )
        gamma = gamma.reshape(-1).to(x_t.dtype)
        if gamma.numel() == 1:
            gamma = gamma.expand(b)
        if gamma.numel() != b:
            raise ValueError(f"gamma must hold 1 or B={b} levels, got shape {tuple(gamma.shape)}")
        emb = self.embed(gamma, cond.scalars)

        guide: Tensor | None = None
        if self.guide in ("initial", "degraded"):
            guide = cond.x_init if self.guide == "initial" else cond.lq
            if guide.shape[0] != b or guide.shape[-2:] != x_t.shape[-2:]:
                raise ValueError(f"guide {tuple(guide.shape)} must match x_t {tuple(x_t.shape)}")
        parts = [cond.lq, x_t] + (
            [guide] if guide is not None and self.integration == "dvsr" else []
        )
        x = pad_to_multiple(torch.cat([p.to(x_t.dtype) for p in parts], dim=1), self.stride)
        full = (x.shape[-2], x.shape[-1])
        guides: dict[tuple[int, int], Tensor] = {}
        if guide is not None:
            guides[full] = pad_to_multiple(guide.to(x_t.dtype), self.stride)

        def guide_at(size: tuple[int, int]) -> Tensor:
            # Resized from the full-resolution guide at every level (as the official code), once
            # per resolution and forward.
            if size not in guides:
                guides[size] = F.interpolate(
                    guides[full], size=size, mode="bilinear", align_corners=False
                )
            return guides[size]

        x = self.conv_in(x)
        skips = [x]
        for layer in self.down:
            x = layer(x, emb, guide_at) if isinstance(layer, ResidualStage) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, emb, guide_at)
        for layer in self.up:
            if isinstance(layer, ResidualStage):
                x = layer(torch.cat([x, skips.pop()], dim=1), emb, guide_at)
            else:
                x = layer(x)
        return self.head(x)[..., :h, :w]
