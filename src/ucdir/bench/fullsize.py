"""Figure "fullsize": one restoration of a full-size SID frame (2120×1416: what the authors'
released model, `python -m ucdir.convert`, restores for Table 1) with the model's networks,
inter-step patch splitting and a sampler (CPU: DPM-Solver++ 10 steps; GPU: the paper's DDPM 50):
seconds and peak memory. Opt-in (``sections=[fullsize]``): on 2 CPU cores it lasts minutes."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ucdir.bench.memory import measure, measure_isolated, memory_kind
from ucdir.bench.networks import BenchModel, compose_run
from ucdir.bench.table import Row, Table
from ucdir.diffusion.patching import PatchSplit
from ucdir.precision import Precision, prepare_networks


def measure_fullsize(nets: tuple[Any, Any], spec: Mapping[str, Any]) -> Row:
    """One `restore()` of a random height × width input with `nets` (predictor, denoiser),
    tiled, with the spec's sampler; its seconds and peak memory (`ucdir.bench.memory.measure`)."""
    # imported here: diffusers is slow to import and the CUDA path runs in this process
    from ucdir.restore import restore

    predictor, denoiser = nets
    device = next(denoiser.parameters()).device
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, spec["height"], spec["width"], generator=gen).to(device)
    sampler = instantiate(spec["sampler"])
    patch = PatchSplit(spec["tile"], spec["overlap"])
    precision: Precision = spec["precision"]

    def call() -> None:
        seeded = torch.Generator(device=device).manual_seed(0)
        restore(lq, predictor, denoiser, sampler, patch, seeded, precision=precision)

    with torch.no_grad():
        return measure(call, device, 0, 1)


def fullsize_job(spec: dict[str, Any]) -> Row:
    """The CPU measurement in a fresh process: builds both networks from their resolved
    configs, then `measure_fullsize`."""
    torch.set_num_threads(spec["threads"])
    predictor = instantiate(spec["predictor"]).eval()
    denoiser = instantiate(spec["denoiser"]).eval()
    prepare_networks(spec["precision"], torch.device("cpu"), predictor, denoiser)
    return measure_fullsize((predictor, denoiser), spec)


def bench_fullsize(
    model: BenchModel,
    height: int,
    width: int,
    tile: int,
    overlap: int,
    sampler: str,
    steps: int,
    threads: int,
    precision: Precision = "fp32",
) -> Row:
    """One tiled restoration of a height × width frame with `sampler` at `steps` steps."""
    cfg = compose_run([f"model={model.name}", f"sampler={sampler}", f"sampler.steps={steps}"])
    spec = {
        "predictor": OmegaConf.to_container(model.cfg.model.predictor, resolve=True),
        "denoiser": OmegaConf.to_container(model.cfg.model.denoiser, resolve=True),
        "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
        "threads": threads,
        "height": height,
        "width": width,
        "tile": tile,
        "overlap": overlap,
        "precision": precision,
    }
    on_cuda = partial(measure_fullsize, (model.predictor, model.denoiser))
    result = measure_isolated(fullsize_job, spec, model.device, on_cuda)
    tiles = len(PatchSplit(tile, overlap).boxes(height, width))
    return {
        "height": height,
        "width": width,
        "tile": tile,
        "overlap": overlap,
        "tiles": tiles,
        "sampler": sampler,
        "steps": steps,
        "precision": precision,
        "memory": memory_kind(model.device),
        **result,
        "seconds_per_step": result["seconds"] / steps,
    }


TABLE = Table(
    "Full-size restoration, tiled (memory: {memory}):",
    [("image", "{width}×{height}"), ("tiles", "{tiles} × {tile}, overlap {overlap}"),
     ("sampler", "{sampler}, {steps} steps"), ("precision", "{precision}"),
     ("seconds", "{seconds:.1f}"), ("seconds / step", "{seconds_per_step:.1f}"),
     ("peak MiB", "{peak_mib:.0f}")],
)  # fmt: skip
