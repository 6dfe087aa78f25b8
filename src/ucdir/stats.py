"""`python -m ucdir.stats [overrides] input_size=128`: parameter counts and MACs of the networks.

Prints one JSON line. MACs = FLOPs / 2 from `torch.utils.flop_counter.FlopCounterMode`, counting
convolution, matmul, addmm and bmm (attention included), for one forward at a square input of
`input_size` px (no padding beyond the network stride).
"""

from __future__ import annotations

import json
import logging
import sys

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ucdir.config_files import CONFIG_DIR
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.overrides import reports_user_errors
from ucdir.types import Cond

log = logging.getLogger(__name__)

_COUNTED = (
    "convolution",
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "_scaled_dot_product_flash_attention_for_cpu",
)


def _cpu_flash_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):  # type: ignore[no-untyped-def]
    """CPU's fused attention kernel, counted as its two bmm's (QKᵀ and AV); torch has no formula
    for it, so without this the attention of a CPU run would be missing from the count."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flop}


def count_params(module: nn.Module) -> int:
    """Number of parameters of `module`."""
    return sum(p.numel() for p in module.parameters())


def _macs(run: object) -> float:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        run()  # type: ignore[operator]
    counts = counter.get_flop_counts()["Global"]
    flops = sum(v for op, v in counts.items() if str(op).split(".")[1] in _COUNTED)
    return flops / 2


def network_macs(
    predictor: InitialPredictor,
    denoiser: ConditionalUNet,
    size: int,
    batch: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """MACs of one forward of each network at a `size`² input (batch `batch`)."""
    dev = torch.device(device)
    s_in = size // predictor.upscale
    lq = torch.rand(batch, predictor.in_channels, s_in, s_in, device=dev)
    lq_rgb = torch.rand(batch, denoiser.lq_channels, size, size, device=dev)
    x_init = torch.rand(batch, denoiser.channels, size, size, device=dev)
    x_t = torch.randn(batch, denoiser.channels, size, size, device=dev)
    scalars = (
        torch.rand(batch, len(denoiser.aux_scalars), device=dev) if denoiser.aux_scalars else None
    )
    gamma = torch.full((batch,), 0.5, device=dev)
    predictor.eval().to(dev)
    denoiser.eval().to(dev)
    return {
        "predictor": _macs(lambda: predictor(lq)),
        "denoiser": _macs(lambda: denoiser(x_t, gamma, Cond(lq_rgb, x_init, scalars))),
    }


def stats(cfg: DictConfig) -> dict[str, object]:
    """Parameter counts and MACs (G) of the configured predictor and diffusion network."""
    predictor: InitialPredictor = instantiate(cfg.model.predictor)
    denoiser: ConditionalUNet = instantiate(cfg.model.denoiser)
    n_pred, n_den = count_params(predictor), count_params(denoiser)
    macs = network_macs(predictor, denoiser, int(cfg.input_size), int(cfg.batch_size), cfg.device)
    return {
        "input_size": int(cfg.input_size),
        "params": {"predictor": n_pred, "denoiser": n_den, "total": n_pred + n_den},
        "macs": {k: round(v / 1e9, 3) for k, v in macs.items()},
        "macs_unit": "G (FLOPs/2: convolution, matmul, addmm, bmm; fused attention as its bmm)",
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="stats")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    sys.stdout.write(json.dumps(stats(cfg)) + "\n")


if __name__ == "__main__":
    main()
