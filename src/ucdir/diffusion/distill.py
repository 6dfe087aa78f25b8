"""Few-step and one-step restoration: a student distilled from a trained model's deterministic
sampler (`DistillObjective`); the sampler that runs it is
`ucdir.diffusion.sampling.DistilledSampler` (also importable from here: older model files name it
so).

The teacher's ODE sampler (DPM-Solver++ or DDIM with eta = 0, both deterministic given x_T) maps
the noise x_T to a residual r0*. The student, a copy of the teacher's networks, learns that map
in one network call and in K calls: call k (k = 0..K-1) sees the state at the K-step level γ_k
and predicts the end point r0*; the next state is the DDIM update on that prediction,
x_{k+1} = γ_{k+1}·r̂0 + σ_{k+1}·ε̂ with ε̂ = (x_k − γ_k·r̂0)/σ_k, and the last call's r̂0 is the
answer. An exact student therefore visits x_k = γ_k·r0* + σ_k·ε* (ε* the noise x_T implies
for r0*) and returns r0* for every K: those are the states it is trained on.

A ground-truth term keeps the student from being bounded by its teacher (SinSR's
consistency-preserving loss, Wang et al., CVPR 2024): the student also learns the inverse map
r0* → x_T (one call at γ = 1, the clean end of the levels, which no sampler step queries), and
the ground truth's residual, mapped to its noise by that inverse (no gradient), must come back
as the ground truth in one step.

A perceptual term (optional, `perceptual_weight`) scores the restoration the student gives at
test time in one call, x_init + r̂0(x_T, γ_0) from the drawn noise, against the ground truth
with a frozen LPIPS-VGG (or LPIPS-Alex, DISTS): the one-step restorers' usual objective
(OSEDiff, AdcSR), added to the distillation rather than replacing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ucdir.diffusion.conditioning import make_cond, to_diffusion
from ucdir.diffusion.objective import Loss, _distance, _raw, perceptual_term
from ucdir.diffusion.parametrization import (
    eps_from_prediction,
    residual_from_eps,
)
from ucdir.diffusion.sampling import (
    DistilledSampler,
    Sampler,
    _sigma,
    level_timesteps,
    standard_normal,
    student_levels,
)
from ucdir.diffusion.schedules import Schedule
from ucdir.loader import load_model
from ucdir.types import Cond


def student_residual(denoiser: nn.Module, x: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
    """The student's end-point estimate r̂0 at (x, γ), with gradients (its raw output when it
    predicts the residual itself, else the residual its ε or v implies)."""
    out = _raw(denoiser)(x, gamma, cond)
    kind = getattr(denoiser, "prediction_type", "epsilon")
    if kind == "sample":
        return out
    return residual_from_eps(x, gamma, eps_from_prediction(x, gamma, out, kind))


def _load_teacher(teacher: Any) -> Any:
    if teacher is None or teacher == "":
        raise ValueError(
            "the distill objective needs a teacher: pretrained=<exported folder | shipped model "
            "| user/repo> (e.g. pretrained=jpeg-cpu), or model.objective.teacher=…"
        )
    if isinstance(teacher, str | Path):
        return load_model(pretrained=teacher)
    return teacher


class DistillObjective:
    """Trains a student (the run's networks, initialised from the teacher) to reproduce the
    teacher's deterministic sampler in 1 and in K steps, plus SinSR's ground-truth term.

    Per batch: x_init* = u*(lq) and r0* = the teacher sampler's residual from x_T ~ N(0, I) (no
    gradient); per sample, K drawn from `steps` and a call k < K, the state
    x_k = γ_k·r0* + σ_k·ε* (see the module docstring). Terms, compared as restored images
    (x_init + r0, so the student's predictor learns too):
    - distill: L1(x_init + r̂0(x_k, γ_k), x_init* + r0*);
    - inverse: L1(f(r0*, γ = 1), x_T), the student's map from an end point back to its noise;
    - gt: L1(x_init + r̂0(x̂_T, γ_0), gt) with x̂_T = f(gt − x_init, γ = 1) without gradient;
    - aux: L1(x_init, gt) (the teacher recipe's auxiliary term);
    - perceptual: LPIPS-VGG (or `perceptual`) of x_init + r̂0(x_T, γ_0), the one-call
      restoration from the drawn noise, to gt.

    Args:
        teacher: the teacher: a `pretrained=` name (exported folder, shipped model, hub id) or a
            loaded `UCDIR`; frozen, never saved in the student's checkpoints.
        teacher_sampler: the teacher's deterministic sampler (DPM-Solver++ or DDIM, eta 0).
        schedule: the schedule of the student's levels (the teacher sampler's).
        steps: the step counts the student is trained for (each sample draws one).
        loss: "l1" or "l2" for every term.
        distill_weight, inverse_weight, gt_weight, aux_l1_weight, perceptual_weight: the
            terms' weights (0 skips a term and its network calls).
        perceptual: the perceptual distance: "lpips_vgg", "lpips_alex" or "dists".
    """

    def __init__(
        self,
        teacher: Any,
        teacher_sampler: Sampler,
        schedule: Schedule,
        steps: Sequence[int] = (1, 4),
        loss: Literal["l1", "l2"] = "l1",
        distill_weight: float = 1.0,
        inverse_weight: float = 1.0,
        gt_weight: float = 1.0,
        aux_l1_weight: float = 0.0,
        perceptual: str = "lpips_vgg",
        perceptual_weight: float = 0.0,
    ) -> None:
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
        weights = (distill_weight, inverse_weight, gt_weight, aux_l1_weight)
        if min(weights) < 0 or distill_weight + gt_weight == 0:
            raise ValueError(
                "the weights must be >= 0 with distill_weight or gt_weight > 0, got "
                f"distill {distill_weight}, inverse {inverse_weight}, gt {gt_weight}, "
                f"aux {aux_l1_weight}"
            )
        if gt_weight > 0 and inverse_weight == 0:
            raise ValueError("gt_weight > 0 needs the inverse map: inverse_weight > 0")
        if getattr(teacher_sampler, "eta", 0.0) != 0.0 or "DDPM" in teacher_sampler.name:
            raise ValueError(
                f"the teacher sampler must be deterministic (DDIM with eta 0, DPM-Solver++, "
                f"UniPC), got {teacher_sampler.name} (eta {getattr(teacher_sampler, 'eta', 0.0)})"
            )
        self.steps = sorted({int(k) for k in steps})
        for k in self.steps:
            level_timesteps(schedule.num_steps, k)
        model = _load_teacher(teacher)
        self.teacher_predictor: nn.Module = model.predictor.eval().requires_grad_(False)
        self.teacher_denoiser: nn.Module = model.denoiser.eval().requires_grad_(False)
        self.teacher_sampler, self.schedule, self.loss = teacher_sampler, schedule, loss
        self.perceptual = perceptual_term(perceptual, perceptual_weight)
        self.weights = dict(
            distill=distill_weight,
            inverse=inverse_weight,
            gt=gt_weight,
            aux=aux_l1_weight,
            perceptual=perceptual_weight,
        )
        self._levels = {k: student_levels(schedule, k) for k in self.steps}

    def _teacher_to(self, device: torch.device) -> None:
        for net in (self.teacher_predictor, self.teacher_denoiser):
            if next(net.parameters()).device != device:
                net.to(device)

    @torch.no_grad()
    def teacher_end_point(
        self, lq: Tensor, x_T: Tensor, scalars: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """(x_init*, r0*) of the teacher for lq in [-1, 1] and x_T, both in [-1, 1] scale."""
        self._teacher_to(lq.device)
        x_init = self.teacher_predictor(lq)
        cond = make_cond(lq, x_init, scalars)
        return x_init, self.teacher_sampler(self.teacher_denoiser, x_T, cond)

    def draw_levels(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """(B,) float64: for each sample, K from `steps` and then one of its K levels."""
        pick = torch.randint(len(self.steps), (batch,), generator=generator)
        out = torch.empty(batch, dtype=torch.float64)
        for i in range(batch):
            levels = self._levels[self.steps[int(pick[i])]]
            k = int(torch.randint(len(levels), (1,), generator=generator))
            out[i] = levels[k]
        return out

    def states(self, x_T: Tensor, r0: Tensor, gamma: Tensor) -> Tensor:
        """x_k = γ·r0 + σ·ε*, the states an exact student visits from x_T (γ: (B,) float64)."""
        first = float(self._levels[self.steps[0]][0])  # the noisiest level, x_T's
        g0 = torch.full_like(gamma, first).view(-1, 1, 1, 1)
        g = gamma.view(-1, 1, 1, 1)
        wide = g.dtype
        eps = (x_T.to(wide) - g0 * r0.to(wide)) / _sigma(g0)
        return (g * r0.to(wide) + _sigma(g) * eps).to(x_T.dtype)

    def __call__(
        self,
        predictor: nn.Module,
        denoiser: nn.Module,
        lq: Tensor,
        gt: Tensor,
        scalars: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Loss:
        """lq, gt: [0, 1] images; returns the weighted sum and its parts."""
        lq, gt = to_diffusion(lq), to_diffusion(gt)
        b, device = gt.shape[0], gt.device
        x_T = standard_normal(tuple(gt.shape), gt, generator)
        x_init = predictor(lq)
        cond = make_cond(lq, x_init, scalars)
        w = self.weights
        parts: dict[str, Tensor] = {}
        if w["distill"] > 0 or w["inverse"] > 0:
            t_init, t_r0 = self.teacher_end_point(lq, x_T, scalars)
        if w["distill"] > 0:
            on_cpu = generator is not None and generator.device.type == "cpu"
            gamma = self.draw_levels(b, generator if on_cpu else None).to(device)
            x_k = self.states(x_T, t_r0, gamma)
            r0 = student_residual(denoiser, x_k, gamma.to(gt.dtype), cond)
            parts["distill"] = _distance(x_init + r0, t_init + t_r0, self.loss)
        ones = torch.ones(b, device=device, dtype=gt.dtype)
        first = self._levels[self.steps[0]][0].to(device, gt.dtype).expand(b)  # x_T's level
        if w["inverse"] > 0:
            parts["inverse"] = _distance(_raw(denoiser)(t_r0, ones, cond), x_T, self.loss)
        if w["gt"] > 0:
            with torch.no_grad():
                noise = _raw(denoiser)(gt - x_init, ones, cond)
            r0 = student_residual(denoiser, noise, first, cond)
            parts["gt"] = _distance(x_init + r0, gt, self.loss)
        if w["aux"] > 0:
            parts["aux"] = torch.nn.functional.l1_loss(x_init, gt)
        if self.perceptual is not None:
            one_call = x_init + student_residual(denoiser, x_T, first, cond)
            parts["perceptual"] = self.perceptual(one_call, gt)
        total = sum(w[name] * value for name, value in parts.items())
        main = parts.get("distill", parts.get("gt"))
        assert main is not None and isinstance(total, Tensor)
        aux = parts.get("aux", main.new_zeros(()))
        return Loss(total, main, aux, parts)


__all__ = [
    "DistillObjective",
    "DistilledSampler",
    "level_timesteps",
    "student_levels",
    "student_residual",
]
