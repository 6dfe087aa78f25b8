"""Training objectives: the residual diffusion loss (paper Eq. 1) and the regression baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ucdir.diffusion.conditioning import make_cond, to_diffusion
from ucdir.diffusion.parametrization import prediction_target
from ucdir.diffusion.sampling import standard_normal
from ucdir.diffusion.schedules import Schedule, gammas
from ucdir.metrics.perceptual import build_dists, build_lpips_alex, build_lpips_vgg

__all__ = ["PERCEPTUAL", "Loss", "PerceptualTerm", "RegressionObjective", "ResidualObjective"]


class Loss(NamedTuple):
    """The total loss and its parts (for logging; `parts` are logged as `train/<name>`)."""

    loss: Tensor
    main: Tensor
    aux: Tensor
    parts: dict[str, Tensor] | None = None


def _distance(a: Tensor, b: Tensor, kind: str) -> Tensor:
    return F.l1_loss(a, b) if kind == "l1" else F.mse_loss(a, b)


def _with_aux(main: Tensor, x_init: Tensor, gt: Tensor, weight: float) -> Loss:
    """The main loss plus `weight` × L1(u(lq), gt) (computed only when the weight is > 0)."""
    aux = F.l1_loss(x_init, gt) if weight > 0 else main.new_zeros(())
    return Loss(main + weight * aux, main, aux)


_PERCEPTUAL_NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "lpips_vgg": build_lpips_vgg,
    "lpips_alex": build_lpips_alex,
    "dists": build_dists,
}
PERCEPTUAL = tuple(_PERCEPTUAL_NETWORKS)


class PerceptualTerm:
    """A frozen perceptual distance as a training loss: the mean over the batch of
    LPIPS-VGG (the usual choice of one-step restorers such as OSEDiff; default), LPIPS-Alex (the
    paper's evaluation metric: training on it optimises the score itself) or DISTS, between a
    restoration and gt in [-1, 1] scale. Gradients flow to the restoration only; the network is
    built from the local weights files when the term is created (a missing file is named at
    once, not mid-run) and is never part of the trained model's state.
    """

    def __init__(self, kind: str = "lpips_vgg") -> None:
        if kind not in PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {', '.join(PERCEPTUAL)}, got {kind!r}")
        self.kind = kind
        self.net = _PERCEPTUAL_NETWORKS[kind]().eval().requires_grad_(False)

    def __call__(self, restored: Tensor, gt: Tensor) -> Tensor:
        if next(self.net.parameters()).device != restored.device:
            self.net.to(restored.device)
        return self.net((restored + 1) / 2, (gt + 1) / 2).float().mean()


def perceptual_term(kind: str, weight: float) -> PerceptualTerm | None:
    """The term when `weight` > 0, else None (no network is built)."""
    if weight < 0:
        raise ValueError(f"perceptual_weight must be >= 0, got {weight!r}")
    return PerceptualTerm(kind) if weight > 0 else None


def _raw(denoiser: nn.Module) -> nn.Module:
    """The denoiser's raw output (`predict`, when it has one) rather than its ε."""
    predict = getattr(denoiser, "predict", None)
    return predict if callable(predict) else denoiser  # type: ignore[return-value]


@dataclass(frozen=True)
class ResidualObjective:
    """Paper Eq. 1: predict the noise of the noisy residual of the initial prediction.

    r0 = gt − u(lq) (in [-1, 1] image scale; u is not detached, so it is trained jointly through
    this loss as in the official code); gamma is drawn per sample uniformly between adjacent
    levels sqrt(alpha_bar_t), sqrt(alpha_bar_{t-1}) of `schedule` with t uniform in 1..T (the
    official draws one t per batch); x_t = gamma·r0 + sqrt(1 − gamma²)·eps; the loss is the mean
    L1 (or L2) between eps and f(concat(lq, x_t), gamma, guide = u(lq), scalars). A denoiser
    with another `prediction_type` ("sample": r0, "v_prediction": v) is trained on that target.

    Args:
        schedule: the training schedule (official: linear, 2000 steps, 1e-6 → 0.01).
        loss: "l1" (official) or "l2".
        aux_l1_weight: weight of an extra L1(u(lq), gt) (0 = official).
    """

    schedule: Schedule
    loss: Literal["l1", "l2"] = "l1"
    aux_l1_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.aux_l1_weight < 0:
            raise ValueError(f"aux_l1_weight must be >= 0, got {self.aux_l1_weight!r}")

    def sample_gamma(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B,) continuous signal levels, piecewise uniform with equal mass per schedule step."""
        levels = gammas(self.schedule).to(device=device, dtype=torch.float32)
        gen_device = generator.device if generator is not None else device
        t = torch.randint(
            1, self.schedule.num_steps + 1, (batch,), generator=generator, device=gen_device
        )
        u = torch.rand(batch, generator=generator, device=gen_device)
        t, u = t.to(device), u.to(device)
        return levels[t] + u * (levels[t - 1] - levels[t])

    def __call__(
        self,
        predictor: nn.Module,
        denoiser: nn.Module,
        lq: Tensor,
        gt: Tensor,
        scalars: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Loss:
        """lq, gt: [0, 1] images ((B, C, H, W), lq possibly packed raw); returns the loss."""
        lq = to_diffusion(lq)
        x_init = predictor(lq)
        gt = to_diffusion(gt)
        r0 = gt - x_init
        b = gt.shape[0]
        gamma = self.sample_gamma(b, gt.device, generator)
        g = gamma.view(b, 1, 1, 1)
        eps = standard_normal(tuple(r0.shape), gt, generator)
        x_t = g * r0 + (1 - g**2).sqrt() * eps
        kind = getattr(denoiser, "prediction_type", "epsilon")
        out = _raw(denoiser)(x_t, gamma, make_cond(lq, x_init, scalars))
        target = prediction_target(r0, eps, gamma, kind)
        return _with_aux(_distance(out, target, self.loss), x_init, gt, self.aux_l1_weight)


@dataclass(frozen=True)
class RegressionObjective:
    """The regression baseline: the same two networks, one forward with a zero noise input at
    gamma = 1, the output read as the residual; L1 (or L2) of x_init + residual to gt, plus
    `perceptual_weight` × a perceptual distance of the restoration to gt (0: none, the shipped
    twin; > 0: the perceptual control of a student trained with the same term)."""

    loss: Literal["l1", "l2"] = "l1"
    aux_l1_weight: float = 0.0
    perceptual: str = "lpips_vgg"
    perceptual_weight: float = 0.0
    _term: PerceptualTerm | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_term", perceptual_term(self.perceptual, self.perceptual_weight))

    def __call__(
        self,
        predictor: nn.Module,
        denoiser: nn.Module,
        lq: Tensor,
        gt: Tensor,
        scalars: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Loss:
        lq = to_diffusion(lq)
        x_init = predictor(lq)
        gt = to_diffusion(gt)
        gamma = torch.ones(gt.shape[0], device=gt.device)
        if getattr(denoiser, "prediction_type", "epsilon") != "epsilon":
            raise ValueError(
                "the regression objective reads the denoiser's output as the residual: use "
                "model.denoiser.prediction_type=epsilon"
            )
        r0 = denoiser(torch.zeros_like(x_init), gamma, make_cond(lq, x_init, scalars))
        out = _with_aux(_distance(x_init + r0, gt, self.loss), x_init, gt, self.aux_l1_weight)
        if self._term is None:
            return out
        perceptual = self._term(x_init + r0, gt)
        parts = {"regression": out.main, "perceptual": perceptual, "aux": out.aux}
        return Loss(out.loss + self.perceptual_weight * perceptual, out.main, out.aux, parts)
