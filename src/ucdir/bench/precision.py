"""Figure "precision": fp32 vs bf16 autocast, each with and without channels_last (forward time
and training throughput)."""

from __future__ import annotations

import statistics
from functools import partial

import torch
from torch import Tensor

from ucdir.bench.networks import BenchModel, eps_inputs, precision
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed
from ucdir.bench.training import bench_train
from ucdir.models import ConditionalUNet
from ucdir.types import Cond


@torch.no_grad()
def _forward(
    denoiser: ConditionalUNet, x_t: Tensor, gamma: Tensor, cond: Cond, bf16: bool
) -> Tensor:
    with precision(x_t.device, bf16):
        return denoiser(x_t, gamma, cond)


def bench_precision(
    model: BenchModel,
    size: int,
    warmup: int,
    repeats: int,
    crop: int,
    batch_size: int,
    train_steps: int,
) -> list[Row]:
    """fp32 vs bf16 autocast, each with and without channels_last: forward time at size² and
    training throughput (`train_steps` timed steps after one warm-up)."""
    rows: list[Row] = []
    for bf16 in (False, True):
        for channels_last in (False, True):
            denoiser = model.denoiser.to(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
            x_t, gamma, cond = eps_inputs(denoiser, size, size, model.device, channels_last)
            forward = partial(_forward, denoiser, x_t, gamma, cond, bf16)
            seconds = statistics.median(timed(forward, warmup, repeats, model.device))
            trained = bench_train(model, crop, batch_size, 1, train_steps, bf16, channels_last)
            rows.append(
                {
                    "dtype": "bf16 autocast" if bf16 else "fp32",
                    "channels_last": channels_last,
                    "size": size,
                    "forward_seconds": seconds,
                    "forward_speedup": (rows[0]["forward_seconds"] / seconds) if rows else 1.0,
                    "train_samples_per_s": trained["samples_per_s"],
                    "train_peak_mib": trained["peak_mib"],
                }
            )
    model.denoiser.to(memory_format=torch.contiguous_format)
    return rows


TABLE = Table(
    "Precision and memory format:",
    [("precision", "{dtype}"), ("channels_last", "{channels_last}"), ("input", "{size}²"),
     ("forward s", "{forward_seconds:.4f}"), ("speed-up", "{forward_speedup:.2f}"),
     ("train samples / s", "{train_samples_per_s:.2f}")],
)  # fmt: skip
