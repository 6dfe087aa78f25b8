"""The networks under test: a model config's predictor and denoiser on the device, random inputs
for them, and the precision and memory-format switches of the figures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from ucdir.config_files import CONFIG_DIR
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.stats import count_params, network_macs
from ucdir.types import Cond


def compose_run(overrides: list[str]) -> DictConfig:
    """The `train` config with `overrides`, as `python -m ucdir.train` would compose it."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides)
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides)


class BenchModel:
    """One model config: its networks on the device and its MAC counts (meta device, free)."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name, self.device = name, device
        self.cfg = compose_run([f"model={name}", "schedule=linear_eval", "patch=none"])
        self.predictor: InitialPredictor = instantiate(self.cfg.model.predictor).eval().to(device)
        self.denoiser: ConditionalUNet = instantiate(self.cfg.model.denoiser).eval().to(device)
        with torch.device("meta"):
            self._meta = (
                instantiate(self.cfg.model.predictor),
                instantiate(self.cfg.model.denoiser),
            )

    def denoiser_macs(self, size: int) -> float:
        """MACs of one diffusion-network forward at size² (batch 1)."""
        return network_macs(*self._meta, size, device="meta")["denoiser"]

    def params(self) -> dict[str, int]:
        return {"predictor": count_params(self.predictor), "denoiser": count_params(self.denoiser)}


def eps_inputs(
    denoiser: ConditionalUNet,
    height: int,
    width: int,
    device: torch.device,
    channels_last: bool = False,
) -> tuple[Tensor, Tensor, Cond]:
    """Random x_t, gamma and cond for one batch-1 call of `denoiser` (values in range)."""
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, denoiser.channels, height, width, generator=gen)
    lq = torch.rand(1, denoiser.lq_channels, height, width, generator=gen) * 2 - 1
    x_init = torch.rand(1, denoiser.channels, height, width, generator=gen) * 2 - 1
    n = len(denoiser.aux_scalars)
    scalars = torch.rand(1, n, generator=gen).to(device) if n else None
    gamma = torch.full((1,), 0.5, device=device)
    x_t, lq, x_init = (to_memory_format(t.to(device), channels_last) for t in (x_t, lq, x_init))
    return x_t, gamma, Cond(lq, x_init, scalars)


@contextmanager
def precision(device: torch.device, bf16: bool) -> Iterator[None]:
    """bf16 autocast on `device` when `bf16`, else fp32."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        yield


def to_memory_format(t: Tensor, channels_last: bool) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t
