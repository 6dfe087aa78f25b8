"""Figure "precision": fp32 vs bf16 autocast (`ucdir.precision`), each with contiguous and
channels-last weights, side by side: the diffusion network's forward, one whole-image restoration
with 1 and 10 network calls, and one training step."""

from __future__ import annotations

import statistics
from functools import partial

import torch
from torch import Tensor

from ucdir.bench.networks import BenchModel, eps_inputs, precision
from ucdir.bench.restore import bench_restore
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed
from ucdir.bench.training import bench_train
from ucdir.models import ConditionalUNet
from ucdir.types import Cond

MODES = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
"""(precision, channels_last): fp32 contiguous first (the reference of the speed-ups)."""
SAMPLERS = {"distilled": 1, "dpmpp": 10}
"""The restorations timed (configs/sampler/<name>: steps): a one-call restorer (a distilled
student, a regression) and the 10-step DPM-Solver++."""


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
    restore_size: int,
) -> list[Row]:
    """Each of `MODES`: forward time at size², restoration time at restore_size² (1 and 10
    calls) and training throughput (`train_steps` timed steps after one warm-up)."""
    rows: list[Row] = []
    for dtype, channels_last in MODES:
        bf16 = dtype == "bf16"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        denoiser = model.denoiser.to(memory_format=fmt)
        model.predictor.to(memory_format=fmt)
        x_t, gamma, cond = eps_inputs(denoiser, size, size, model.device, channels_last)
        forward = partial(_forward, denoiser, x_t, gamma, cond, bf16)
        seconds = statistics.median(timed(forward, warmup, repeats, model.device))
        restored = {
            r["sampler"]: r["seconds"]
            for r in bench_restore(model, restore_size, SAMPLERS, 1, "bf16" if bf16 else "fp32")
        }
        trained = bench_train(model, crop, batch_size, 1, train_steps, bf16, channels_last)
        first = rows[0] if rows else None
        rows.append(
            {
                "dtype": "bf16 autocast" if bf16 else "fp32",
                "channels_last": channels_last,
                "size": size,
                "forward_seconds": seconds,
                "forward_speedup": first["forward_seconds"] / seconds if first else 1.0,
                "restore_size": restore_size,
                "restore_1_seconds": restored["distilled"],
                "restore_10_seconds": restored["dpmpp"],
                "restore_speedup": (first["restore_10_seconds"] / restored["dpmpp"])
                if first
                else 1.0,
                "train_seconds_per_step": trained["seconds_per_step"],
                "train_samples_per_s": trained["samples_per_s"],
                "train_speedup": (trained["samples_per_s"] / first["train_samples_per_s"])
                if first
                else 1.0,
                "train_peak_mib": trained["peak_mib"],
            }
        )
    model.denoiser.to(memory_format=torch.contiguous_format)
    model.predictor.to(memory_format=torch.contiguous_format)
    return rows


TABLE = Table(
    "Precision and memory format, side by side (speed-ups against fp32 contiguous; "
    "restoration: predictor + 1 call (distilled sampler) or 10 calls (DPM-Solver++), whole "
    "image; training: objective + backward + AdamW, the train section's crop and batch):",
    [("precision", "{dtype}"), ("channels_last", "{channels_last}"), ("input", "{size}²"),
     ("forward s", "{forward_seconds:.4f}"), ("× fwd", "{forward_speedup:.2f}"),
     ("restore", "{restore_size}²"), ("1 call s", "{restore_1_seconds:.3f}"),
     ("10 calls s", "{restore_10_seconds:.3f}"), ("× restore", "{restore_speedup:.2f}"),
     ("train s / step", "{train_seconds_per_step:.3f}"),
     ("train samples / s", "{train_samples_per_s:.2f}"), ("× train", "{train_speedup:.2f}")],
)  # fmt: skip
