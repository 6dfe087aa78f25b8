"""lq -> restored: the only inference path (validation, evaluation, the CLI, tests, notebooks)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ucdir.diffusion.conditioning import from_diffusion, make_cond, to_diffusion
from ucdir.diffusion.fidelity import fidelity_guidance
from ucdir.diffusion.patching import Tiling, WholeImage
from ucdir.diffusion.sampling import SamplerLike, StepCallback
from ucdir.precision import Precision, autocast
from ucdir.types import Cond, EpsFn


class Restoration(NamedTuple):
    """Result of `restore`, images (B, 3, H, W) in [0, 1].

    Attributes:
        restored: clamp(x_init + r0, 0, 1) of the first sample.
        x_init: the initial prediction u(lq), clamped.
        mean: per-pixel mean over `num_samples` samples (None for one sample).
        std: per-pixel standard deviation over the samples (None for one sample).
    """

    restored: Tensor
    x_init: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None


@torch.no_grad()
def restore(
    lq: Tensor,
    predictor: nn.Module,
    denoiser: EpsFn,
    sampler: SamplerLike,
    patch: Tiling | None = None,
    generator: torch.Generator | None = None,
    *,
    scalars: Tensor | None = None,
    guidance: float = 0.0,
    num_samples: int = 1,
    callback: StepCallback | None = None,
    precision: Precision = "fp32",
) -> Restoration:
    """Restores a batch: x_init = u(lq), r0 sampled by the diffusion, restored = x_init + r0.

    Args:
        lq: (B, C, H, W) degraded images in [0, 1] (packed raw: (B, 4, H/2, W/2)).
        predictor: the initial predictor u.
        denoiser: the noise predictor f(x_t, gamma, cond) (a `ConditionalUNet`).
        sampler: a `Sampler` (any diffusers scheduler) or the `RegressionSampler`.
        patch: None for whole images, `PatchSplit` (inter-step, paper), `AutoPatchSplit` (its
            tile chosen from a memory budget) or `NaivePatchSplit` (the Fig. 6 baseline).
        generator: the only source of randomness.
        scalars: (B, K) auxiliary scalars, if the model uses any.
        guidance: fidelity–realness scale ≥ 0 (0 = the paper's sampler).
        num_samples: samples per input; > 1 also returns their mean and standard deviation.
        callback: called with (step, x_t) after every sampler step of every sample.
        precision: ``fp32``, or ``bf16``: the networks run under bf16 autocast (one context for
            the whole restoration), their outputs and everything else stay fp32
            (`ucdir.precision`; the caller puts the weights channels-last with `prepare`).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    with autocast(precision, lq.device):
        return _restore(
            lq, predictor, denoiser, sampler, patch or WholeImage(), generator, scalars, guidance,
            num_samples, callback,
        )  # fmt: skip


def _fp32(eps_fn: EpsFn) -> EpsFn:
    """`eps_fn` with an output of x_t's dtype (a network under autocast returns bf16): the
    sampler's arithmetic and the residual stay in fp32 (fp64 in the tests)."""

    def call(x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        return eps_fn(x_t, gamma, cond).to(x_t.dtype)

    return call


def _restore(
    lq: Tensor,
    predictor: nn.Module,
    denoiser: EpsFn,
    sampler: SamplerLike,
    tiling: Tiling,
    generator: torch.Generator | None,
    scalars: Tensor | None,
    guidance: float,
    num_samples: int,
    callback: StepCallback | None,
) -> Restoration:
    lq_d = to_diffusion(lq)
    tiling = tiling.resolve(denoiser, lq_d, scalars, int(getattr(predictor, "upscale", 1)))
    x_init = tiling.predict(predictor, lq_d).to(lq.dtype)
    cond = make_cond(lq_d, x_init, scalars)
    eps_fn = fidelity_guidance(_fp32(denoiser), guidance)
    samples = []
    for _ in range(num_samples):
        r0 = tiling.sample(sampler, eps_fn, cond, generator, callback)
        samples.append(from_diffusion(x_init + r0).clamp(0, 1))
    x_init_img = from_diffusion(x_init).clamp(0, 1)
    if num_samples == 1:
        return Restoration(samples[0], x_init_img)
    stack = torch.stack(samples)
    return Restoration(samples[0], x_init_img, stack.mean(0), stack.std(0))
