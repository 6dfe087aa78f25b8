"""Figure "restore": one whole-image `restore()` (predictor + N sampler steps) per sampler, its
time per step and per megapixel."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from ucdir.bench.networks import BenchModel, compose_run, eps_inputs
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed
from ucdir.precision import Precision, autocast


def bench_restore(
    model: BenchModel,
    size: int,
    samplers: Mapping[str, int],
    repeats: int,
    precision: Precision = "fp32",
) -> list[Row]:
    """Time of one whole-image `restore()` at size² per sampler, and per megapixel, in
    `precision` (`ucdir.precision`; the networks in whatever layout they are)."""
    # imported here: diffusers is slow to import, and the memory probes' fresh processes
    # import this package without needing it
    from ucdir.restore import restore

    s_in = size // model.predictor.upscale
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(1, model.predictor.in_channels, s_in, s_in, generator=gen)
    lq = lq.to(model.device)
    x_t, gamma, cond = eps_inputs(model.denoiser, size, size, model.device)
    with torch.no_grad(), autocast(precision, model.device):  # warm-up at this size
        model.predictor(lq * 2 - 1)
        model.denoiser(x_t, gamma, cond)
    rows = []
    for name, steps in samplers.items():
        cfg = compose_run([f"model={model.name}", f"sampler={name}", f"sampler.steps={steps}"])
        sampler = instantiate(cfg.sampler)

        def call(sampler: Any = sampler) -> None:
            gen = torch.Generator(device=model.device).manual_seed(0)
            restore(lq, model.predictor, model.denoiser, sampler, None, gen, precision=precision)

        seconds = statistics.median(timed(call, 0, repeats, model.device))
        megapixels = size * size / 1e6
        rows.append(
            {
                "sampler": name,
                "scheduler": sampler.name,
                "steps": int(steps),
                "size": size,
                "seconds": seconds,
                "seconds_per_megapixel": seconds / megapixels,
                "seconds_per_step": seconds / int(steps),
            }
        )
    return rows


TABLE = Table(
    "One restoration, predictor + sampler, whole image, batch 1 (s / step = seconds / steps, "
    "predictor included; per megapixel at this size: attention grows faster than the area):",
    [("sampler", "{sampler} ({scheduler})"), ("steps", "{steps}"), ("image", "{size}²"),
     ("seconds", "{seconds:.2f}"), ("s / megapixel", "{seconds_per_megapixel:.1f}"),
     ("s / step", "{seconds_per_step:.3f}")],
)  # fmt: skip
