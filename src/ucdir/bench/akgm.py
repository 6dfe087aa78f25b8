"""Figure "akgm": one Adaptive Kernel Guidance layer (paper Eq. 2) on a large tile, the earlier
multiply-and-sum fusion of the kernel bases next to the batched matmul of `AdaptiveKernelGuidance`:
time and peak memory of each."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ucdir.bench.memory import measure, measure_isolated, memory_kind
from ucdir.bench.networks import BenchModel
from ucdir.bench.table import Row, Table
from ucdir.models.guidance import AdaptiveKernelGuidance

FORMULATIONS = {"product_sum": "multiply + sum (before)", "bmm": "batched matmul (now)"}


def product_sum(layer: AdaptiveKernelGuidance, h: Tensor, m: Tensor) -> Tensor:
    """The AKGM output computed as the layer did before the batched matmul: the (B, H, W, C, N)
    basis responses times M broadcast, then summed over N (a second tensor of that size).

    Kept here only as the reference of this figure; equal to `layer(h, m)`.
    """
    b, c, hh, ww = h.shape
    z = layer.bases(h.contiguous(memory_format=torch.channels_last))
    z = z.permute(0, 2, 3, 1).reshape(b, hh, ww, c, layer.kernels)
    return (z * m.permute(0, 2, 3, 1).unsqueeze(3)).sum(dim=-1).permute(0, 3, 1, 2)


def official_fusion(layer: AdaptiveKernelGuidance, h: Tensor, m: Tensor) -> Tensor:
    """The AKGM output computed as the official code does (notes §3): the grouped conv on
    contiguous features, its (B, C·N, H, W) output viewed (B, C, N, H, W), times M, summed over N.

    Kept here as the reference of the "official formulation" figures; equal to `layer(h, m)`.
    """
    b, c, hh, ww = h.shape
    z = layer.bases(h.contiguous()).view(b, c, layer.kernels, hh, ww)
    return (z * m.unsqueeze(1)).sum(2)


@contextmanager
def official_formulation(network: nn.Module) -> Iterator[None]:
    """Every AKGM of `network` computes `official_fusion` inside the context (an instance
    attribute shadows the class's forward; removed on exit)."""
    layers = [m for m in network.modules() if isinstance(m, AdaptiveKernelGuidance)]
    for layer in layers:
        layer.forward = partial(official_fusion, layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def measure_akgm(spec: Mapping[str, Any], device: torch.device) -> Row:
    """Time and peak memory of one no_grad AKGM call on a random size² input, computed the way
    `spec["formulation"]` names (a key of `FORMULATIONS`)."""
    torch.manual_seed(0)
    layer = AdaptiveKernelGuidance(spec["channels"], spec["kernels"]).eval().to(device)
    gen = torch.Generator().manual_seed(0)
    size = spec["size"]
    h = torch.randn(1, spec["channels"], size, size, generator=gen).to(device)
    m = torch.randn(1, spec["kernels"], size, size, generator=gen).to(device)
    fuse = partial(product_sum, layer) if spec["formulation"] == "product_sum" else layer
    with torch.no_grad():
        return measure(lambda: fuse(h, m), device, spec["warmup"], spec["repeats"])


def akgm_job(spec: dict[str, Any]) -> Row:
    """The CPU measurement in a fresh process (its peak RSS is this formulation's own)."""
    torch.set_num_threads(spec["threads"])
    return measure_akgm(spec, torch.device("cpu"))


def bench_akgm(model: BenchModel, size: int, warmup: int, repeats: int, threads: int) -> Row:
    """Both formulations of the model's first-level AKGM (width × mults[0] channels) at size²."""
    denoiser = model.cfg.model.denoiser
    channels, kernels = int(denoiser.width) * int(denoiser.mults[0]), int(denoiser.kernels)
    spec = {
        "channels": channels,
        "kernels": kernels,
        "size": size,
        "warmup": warmup,
        "repeats": repeats,
        "threads": threads,
    }
    results = {}
    for formulation in FORMULATIONS:
        job = {**spec, "formulation": formulation}
        on_cuda = partial(measure_akgm, device=model.device)
        results[formulation] = measure_isolated(akgm_job, job, model.device, on_cuda)
    return {
        "channels": channels,
        "kernels": kernels,
        "size": size,
        "basis_mib": channels * kernels * size * size * 4 / 2**20,
        "speedup": results["product_sum"]["seconds"] / results["bmm"]["seconds"],
        "memory": memory_kind(model.device),
        **results,
    }


def _rows(value: Mapping[str, Any]) -> list[Row]:
    rows = []
    for formulation, name in FORMULATIONS.items():
        speedup = value["speedup"] if formulation == "bmm" else 1.0
        rows.append({**value, **value[formulation], "formulation": name, "speedup": speedup})
    return rows


TABLE = Table(
    "One AKGM layer at the first level's width (fp32, batch 1, no_grad; memory: {memory}; "
    "basis MiB: one (H, W, C·N) tensor of basis responses):",
    [("layer", "C={channels}, N={kernels}"), ("input", "{size}²"), ("fusion", "{formulation}"),
     ("seconds", "{seconds:.3f}"), ("speed-up", "{speedup:.2f}"), ("basis MiB", "{basis_mib:.0f}"),
     ("peak MiB", "{peak_mib:.0f}"), ("added by the call (MiB)", "{added_mib:.0f}")],
    _rows,
)  # fmt: skip
