"""Figure "train": training throughput, the objective's forward + backward + the optimiser's step
on random batches (no data loading)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate

from ucdir.bench.memory import measure
from ucdir.bench.networks import BenchModel, precision, to_memory_format
from ucdir.bench.table import Row, Table


def bench_train(
    model: BenchModel,
    crop: int,
    batch_size: int,
    warmup: int,
    steps: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> Row:
    """Training steps per second of a fresh LightningModule of the model config: the objective's
    forward, backward and the configured optimiser's step on one random batch (no data loading).
    `peak_mib` on CUDA only (a CPU's peak RSS would include everything this process ran)."""
    device = model.device
    step = train_step(model.cfg.model, device, crop, batch_size, bf16, channels_last)
    measured = measure(step, device, warmup, steps)
    seconds = measured["seconds"]
    return {
        "crop": crop,
        "batch_size": batch_size,
        "seconds_per_step": seconds,
        "samples_per_s": batch_size / seconds,
        "peak_mib": measured["peak_mib"] if device.type == "cuda" else None,
    }


def train_step(
    model_cfg: Any,
    device: torch.device,
    crop: int,
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
    compile: bool = False,
) -> Callable[[], None]:
    """One training step of a fresh LightningModule of `model_cfg` (the `model` config node) on
    one random batch: objective forward (bf16 autocast when `bf16`), backward, the configured
    optimiser's step; with `compile`, the denoiser is `torch.compile`d (its first call compiles)."""
    lit = instantiate(model_cfg).to(device).train()
    if channels_last:
        lit = lit.to(memory_format=torch.channels_last)
    if compile:
        lit.denoiser.compile()
    config = lit.configure_optimizers()  # {"optimizer", "lr_scheduler"} with a schedule
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    gen = torch.Generator().manual_seed(0)
    s_in = crop // lit.predictor.upscale
    lq = torch.rand(batch_size, lit.predictor.in_channels, s_in, s_in, generator=gen)
    gt = torch.rand(batch_size, lit.denoiser.channels, crop, crop, generator=gen)
    n = len(lit.denoiser.aux_scalars)
    scalars = torch.rand(batch_size, n, generator=gen).to(device) if n else None
    lq = to_memory_format(lq.to(device), channels_last)
    gt = to_memory_format(gt.to(device), channels_last)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision(device, bf16):
            loss = lit.objective(lit.predictor, lit.denoiser, lq, gt, scalars).loss
        loss.backward()
        optimizer.step()

    return step


TABLE = Table(
    "Training, fp32 (objective + backward + AdamW; random batches):",
    [("crop", "{crop}"), ("batch (per device)", "{batch_size}"),
     ("s / step", "{seconds_per_step:.3f}"), ("samples / s", "{samples_per_s:.2f}")],
)  # fmt: skip
