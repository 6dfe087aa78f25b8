"""The reverse process: the sampler protocol (`SamplerLike`), one adapter that runs any
`diffusers` scheduler on our noise predictor (`Sampler`), the regression baseline's one forward
(`RegressionSampler`) and a distilled student's few calls (`DistilledSampler`)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from diffusers import SchedulerMixin
from torch import Tensor

from ucdir.diffusion.parametrization import eps_from_residual, residual_from_eps, wide_dtype
from ucdir.diffusion.schedules import Schedule, gammas
from ucdir.types import Cond, EpsFn

StepCallback = Callable[[int, Tensor], None]
"""callback(step index, x after the step) for progress bars and intermediate states."""
Gen = torch.Generator | None
Cb = StepCallback | None


class SamplerLike(Protocol):
    """What `restore` needs of a sampler: `Sampler` (any diffusers scheduler),
    `RegressionSampler`, `DistilledSampler`."""

    steps: int

    def __call__(
        self, eps_fn: EpsFn, x_T: Tensor, cond: Cond, *, generator: Gen = None, callback: Cb = None
    ) -> Tensor: ...

    def initial_noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
    ) -> Tensor: ...


def standard_normal(
    shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """N(0, I) of `shape` drawn from `generator` on its own device (`like`'s when None), then
    moved to `like`'s device and dtype: the same numbers for a CPU generator on any device."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device, like.dtype)


class GaussianStart:
    """Samplers that start from x_T ~ N(0, I) (`Sampler`, `DistilledSampler`)."""

    def initial_noise(self, shape: tuple[int, ...], like: Tensor, generator: Gen) -> Tensor:
        """x_T ~ N(0, I) on `like`'s device, drawn from `generator` (on its own device)."""
        return standard_normal(shape, like, generator)


def clamp_residual(eps_fn: EpsFn, limit: float) -> EpsFn:
    """Clamps each step's residual estimate r̂0 = (x_t − sqrt(1 − γ²)·ε̂)/γ to [−limit, limit] and
    returns the ε consistent with it (the official `clip_denoised`, for every scheduler).

    The conversions run in float64 (`ucdir.diffusion.parametrization`); given gamma in float64
    (as `Sampler` passes it), the scheduler's step on the returned ε is the step on the clamped
    residual, also at the last steps where γ ≈ 1."""

    def clamped(x_t: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        r0 = residual_from_eps(x_t, gamma, eps_fn(x_t, gamma, cond)).clamp(-limit, limit)
        return eps_from_residual(x_t, gamma, r0)

    return clamped


@dataclass(frozen=True)
class Sampler(GaussianStart):
    """Runs a diffusers scheduler built on `schedule` for `steps` steps.

    For each scheduler timestep t the network gets gamma = sqrt(alphas_cumprod[t]) and returns
    eps; `scheduler.step` does the update. The default (ddpm on the 50-step linear 1e-6 → 0.4
    schedule, residual clamped to [−1, 1]) is the paper's sampler.

    Args:
        scheduler: a diffusers scheduler class or partial, called with `num_train_timesteps` and
            `trained_betas` from `schedule`.
        schedule: the β list the scheduler runs on.
        steps: number of sampling steps (≤ schedule.num_steps).
        clip_residual: clamp of the residual estimate at every step (None = off).
        eta: DDIM's η, passed to schedulers that take one.
    """

    scheduler: Callable[..., SchedulerMixin]
    schedule: Schedule
    steps: int = 50
    clip_residual: float | None = 1.0
    eta: float = 0.0
    _template: Any = field(init=False, repr=False, compare=False)  # a diffusers scheduler

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= self.schedule.num_steps:
            raise ValueError(
                f"steps must be in 1..{self.schedule.num_steps} (the schedule's length), "
                f"got {self.steps!r}"
            )
        template = self.scheduler(
            num_train_timesteps=self.schedule.num_steps,
            trained_betas=self.schedule.betas.tolist(),
        )
        object.__setattr__(self, "_template", template)

    @property
    def name(self) -> str:
        """The scheduler's class name (for sidecars and logs)."""
        return type(self._template).__name__

    @property
    def sigma_space(self) -> bool:
        """The scheduler keeps its state as x_σ = r0 + σ·ε (Euler, Heun, EDM-style: an initial
        noise scale above 1, `scale_model_input` dividing by sqrt(σ² + 1)) rather than as the
        network's x_t = γ·r0 + sqrt(1 − γ²)·ε (DDPM, DDIM, DPM-Solver++, UniPC)."""
        return float(self._template.init_noise_sigma) != 1.0

    def _step_kwargs(self, generator: torch.Generator | None) -> dict[str, Any]:
        params = inspect.signature(self._template.step).parameters
        kwargs: dict[str, Any] = {}
        if "generator" in params:
            kwargs["generator"] = generator
        if "eta" in params:
            kwargs["eta"] = self.eta
        return kwargs

    @torch.no_grad()
    def __call__(
        self, eps_fn: EpsFn, x_T: Tensor, cond: Cond, *, generator: Gen = None, callback: Cb = None
    ) -> Tensor:
        """Samples the residual r0 (in [-1, 1] image scale) starting from x_T (B, C, H, W)."""
        sched = copy.deepcopy(self._template)  # schedulers are stateful; never share one
        sched.set_timesteps(self.steps, device=x_T.device)
        # float64 levels: sqrt(1 − γ²) must match the scheduler's sqrt(1 − ᾱ) at γ ≈ 1, where a
        # float32 γ loses it (see `clamp_residual`); the network casts gamma to its own dtype.
        levels = sched.alphas_cumprod.to(x_T.device, wide_dtype(x_T)).sqrt()
        if self.clip_residual is not None:
            eps_fn = clamp_residual(eps_fn, self.clip_residual)
        kwargs = self._step_kwargs(generator)
        if self.sigma_space:
            return self._sample_sigmas(sched, eps_fn, x_T, cond, kwargs, callback)
        x = x_T
        for i, t in enumerate(sched.timesteps):
            gamma = levels[t].expand(x.shape[0])
            eps = eps_fn(x, gamma, cond).to(x.dtype)
            x = sched.step(eps, t, x, **kwargs).prev_sample
            if callback is not None:
                callback(i, x)
        return x

    def _sample_sigmas(
        self,
        sched: Any,
        eps_fn: EpsFn,
        x_T: Tensor,
        cond: Cond,
        kwargs: dict[str, Any],
        callback: StepCallback | None,
    ) -> Tensor:
        """A sigma-space scheduler: its state x_σ = r0 + σ·ε starts at x_T·`init_noise_sigma`;
        the network sees x_t = `scale_model_input`(x_σ) = x_σ / sqrt(σ² + 1) at the level
        γ = 1 / sqrt(σ² + 1) (float64) and its ε is the same in both forms; the state at σ = 0 is
        r0. A second-order scheduler (Heun) calls the network twice per step; `callback` is
        called once per completed step."""
        x = x_T * sched.init_noise_sigma
        sigmas = sched.sigmas.to(x_T.device, wide_dtype(x_T))
        done, pending = 0, False
        for t in sched.timesteps:
            x_t = sched.scale_model_input(x, t)
            sigma = sigmas[sched.step_index]
            gamma = (1 + sigma * sigma).rsqrt().expand(x.shape[0])
            eps = eps_fn(x_t, gamma, cond).to(x.dtype)
            x = sched.step(eps, t, x, **kwargs).prev_sample
            pending = not getattr(sched, "state_in_first_order", True)  # mid-way through a step
            if callback is not None and not pending:
                callback(done, x)
                done += 1
        if callback is not None and pending:  # Heun's last step (to σ = 0) is a single call
            callback(done, x)
        return x


@dataclass(frozen=True)
class RegressionSampler:
    """The regression baseline's inference: one network call at gamma = 1 with a zero noise input,
    its output read as the residual (same interface as `Sampler`)."""

    steps: int = 1  # accepted so a shared `sampler.steps` override composes; always one call
    name: str = "regression"

    @torch.no_grad()
    def __call__(
        self, eps_fn: EpsFn, x_T: Tensor, cond: Cond, *, generator: Gen = None, callback: Cb = None
    ) -> Tensor:
        zeros = torch.zeros_like(x_T)
        r0 = eps_fn(zeros, torch.ones(x_T.shape[0], device=x_T.device, dtype=x_T.dtype), cond)
        if callback is not None:
            callback(0, r0)
        return r0

    def initial_noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        return torch.zeros(shape, device=like.device, dtype=like.dtype)


def level_timesteps(num_steps: int, steps: int) -> list[int]:
    """The `steps` timesteps (0-based, diffusers' indexing) a K-step student is called at:
    evenly spaced from the noisiest level T − 1 down (K = 4 on 50 levels: 49, 37, 24, 12)."""
    if not 1 <= steps <= num_steps:
        raise ValueError(f"steps must be in 1..{num_steps} (the schedule's length), got {steps!r}")
    return [num_steps - 1 - (k * num_steps) // steps for k in range(steps)]


def student_levels(schedule: Schedule, steps: int) -> Tensor:
    """(steps,) float64 signal levels γ_k = sqrt(ᾱ_{t_k}) of the K-step student."""
    levels = gammas(schedule)  # index t + 1 is diffusers' timestep t
    return levels[[t + 1 for t in level_timesteps(schedule.num_steps, steps)]]


def _sigma(gamma: Tensor) -> Tensor:
    return (1 - gamma * gamma).clamp_min(0).sqrt()


@dataclass(frozen=True)
class DistilledSampler(GaussianStart):
    """Restores with a distilled student in `steps` network calls (1, 2, 4, ...).

    Each call predicts the end point r̂0 (clamped to ±`clip_residual`, as every sampler does);
    between calls the state moves to the next level by the deterministic DDIM update; the last
    r̂0 is returned. The network is called through `eps_fn`, so inter-step patch splitting and
    the fidelity guidance wrap every call exactly as for the other samplers.

    Args:
        schedule: the levels' schedule (the evaluation schedule the teacher sampled on).
        steps: network calls per restoration.
        clip_residual: clamp of each call's residual estimate (None = off).
    """

    schedule: Schedule
    steps: int = 1
    clip_residual: float | None = 1.0

    def __post_init__(self) -> None:
        level_timesteps(self.schedule.num_steps, self.steps)  # validates steps

    @property
    def name(self) -> str:
        return f"distilled-{self.steps}"

    @torch.no_grad()
    def __call__(
        self, eps_fn: EpsFn, x_T: Tensor, cond: Cond, *, generator: Gen = None, callback: Cb = None
    ) -> Tensor:
        """The residual r0 (in [-1, 1] image scale) from x_T (B, C, H, W)."""
        levels = student_levels(self.schedule, self.steps).to(x_T.device, wide_dtype(x_T))
        x = x_T
        r0 = x
        for k in range(self.steps):
            gamma = levels[k].expand(x.shape[0])
            r0 = residual_from_eps(x, gamma, eps_fn(x, gamma, cond).to(x.dtype))
            if self.clip_residual is not None:
                r0 = r0.clamp(-self.clip_residual, self.clip_residual)
            if k + 1 < self.steps:
                eps = eps_from_residual(x, gamma, r0)
                g = levels[k + 1]
                x = (g * r0.to(g.dtype) + _sigma(g) * eps.to(g.dtype)).to(x_T.dtype)
            if callback is not None:
                callback(k, x if k + 1 < self.steps else r0)
        return r0
