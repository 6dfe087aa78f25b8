"""Noise schedules as β lists. Networks are conditioned on gamma = sqrt(alpha_bar), never on a
step index, so the training and sampling schedules are independent (paper §4, notes §3.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Schedule(Protocol):
    """A discrete noise schedule of `num_steps` levels."""

    num_steps: int

    @property
    def betas(self) -> Tensor:
        """(num_steps,) float64 β_1..β_T."""
        ...


def gammas(schedule: Schedule) -> Tensor:
    """(T + 1,) float64 signal levels sqrt(alpha_bar_t) for t = 0..T, with gamma_0 = 1."""
    alpha_bar = torch.cumprod(1.0 - schedule.betas, dim=0)
    return torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar.sqrt()])


@dataclass(frozen=True)
class LinearSchedule:
    """β linear from `beta_start` to `beta_end` over `num_steps` (the official schedules:
    training 2000 steps 1e-6 → 0.01; evaluation 50 steps 1e-6 → 0.4)."""

    num_steps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 0.01

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps!r}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(
                "need 0 < beta_start <= beta_end < 1, got "
                f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}"
            )

    @property
    def betas(self) -> Tensor:
        return torch.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=torch.float64)


@dataclass(frozen=True)
class CosineSchedule:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos²(((t/T + s)/(1 + s))·π/2),
    β clipped at `max_beta`."""

    num_steps: int = 1000
    s: float = 0.008
    max_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps!r}")

    @property
    def betas(self) -> Tensor:
        t = torch.arange(self.num_steps + 1, dtype=torch.float64) / self.num_steps
        alpha_bar = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=self.max_beta)
