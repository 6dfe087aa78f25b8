"""Toy noise predictors and config loading shared by the diffusion tests."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import Tensor

from tests.conftest import CONFIGS
from ucdir.types import Cond, EpsFn


def oracle(r0: Tensor) -> EpsFn:
    """The exact noise, computed from the known answer r0."""

    def eps_fn(x: Tensor, g: Tensor, cond: Cond) -> Tensor:
        g = g.view(-1, 1, 1, 1)
        return (x - g * r0) / (1 - g**2).sqrt()

    return eps_fn


def local_eps(seed: int = 0) -> EpsFn:
    """A fixed random 3×3 conv over (x_t, lq, x_init) modulated by gamma: receptive field 1 px."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 9, 3, 3, generator=g) * 0.1

    def eps_fn(x: Tensor, gamma: Tensor, cond: Cond) -> Tensor:
        inp = torch.cat([x, cond.lq, cond.x_init], dim=1)
        out = torch.nn.functional.conv2d(inp, weight, padding=1)
        return out * (1 + gamma.view(-1, 1, 1, 1)) + 0.5 * x

    return eps_fn


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def load_sampler(sampler: str, schedule: str = "linear_eval", **override: object):
    """The sampler option `sampler` on schedule `schedule`, composed as the CLI would."""
    from tests.conftest import compose

    extra = [f"sampler.{k}={v}" for k, v in override.items()]
    cfg = compose(
        "train", [f"sampler={sampler}", f"schedule={schedule}", "paths.output_dir=.", *extra]
    )
    return instantiate(cfg.sampler)


def make_cond(b: int = 1, h: int = 24, w: int = 40, seed: int = 0) -> Cond:
    g = torch.Generator().manual_seed(seed)
    return Cond(
        torch.rand(b, 3, h, w, generator=g) * 2 - 1, torch.rand(b, 3, h, w, generator=g) * 2 - 1
    )
