"""Figure "patch": one noise-prediction call on a height × width image, whole and tiled
(`PatchSplit`): time and peak memory of each."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ucdir.bench.memory import measure, measure_isolated, memory_kind
from ucdir.bench.networks import BenchModel, eps_inputs
from ucdir.bench.table import Row, Table
from ucdir.diffusion.patching import PatchSplit
from ucdir.models import ConditionalUNet


def measure_patch(denoiser: ConditionalUNet, spec: Mapping[str, Any]) -> Row:
    """Times `repeats` noise-prediction calls of `denoiser` on a height × width image, whole
    (`tile` None) or tiled, and their peak memory (`ucdir.bench.memory.measure`)."""
    device = next(denoiser.parameters()).device
    x_t, gamma, cond = eps_inputs(denoiser, spec["height"], spec["width"], device)
    tile = spec["tile"]
    eps_fn = denoiser if tile is None else PatchSplit(tile, spec["overlap"]).wrap(denoiser)
    with torch.no_grad():
        return measure(lambda: eps_fn(x_t, gamma, cond), device, spec["warmup"], spec["repeats"])


def patch_job(spec: dict[str, Any]) -> Row:
    """The CPU measurement in a fresh process: builds the denoiser from its resolved config,
    then `measure_patch`."""
    torch.set_num_threads(spec["threads"])
    denoiser: ConditionalUNet = instantiate(spec["denoiser"]).eval()
    return measure_patch(denoiser, spec)


def bench_patch(
    model: BenchModel,
    height: int,
    width: int,
    tile: int,
    overlap: int,
    warmup: int,
    repeats: int,
    threads: int,
) -> Row:
    """Tiled vs whole-image noise-prediction call on one height × width image."""
    split = PatchSplit(tile, overlap)
    boxes = split.boxes(height, width)
    tile_area = sum((r.stop - r.start) * (c.stop - c.start) for r, c in boxes)
    spec = {
        "denoiser": OmegaConf.to_container(model.cfg.model.denoiser, resolve=True),
        "threads": threads,
        "height": height,
        "width": width,
        "overlap": overlap,
        "warmup": warmup,
        "repeats": repeats,
    }
    results = {}
    for mode, t in (("whole", None), ("tiled", tile)):
        job = {**spec, "tile": t}
        on_cuda = partial(measure_patch, model.denoiser)
        results[mode] = measure_isolated(patch_job, job, model.device, on_cuda)
    return {
        "height": height,
        "width": width,
        "tile": tile,
        "overlap": overlap,
        "tiles": len(boxes),
        "tile_area_ratio": tile_area / (height * width),
        "time_ratio": results["tiled"]["seconds"] / results["whole"]["seconds"],
        "memory": memory_kind(model.device),
        **results,
    }


def _rows(value: Mapping[str, Any]) -> list[Row]:
    tiled = f"{value['tiles']} tiles {value['tile']}, overlap {value['overlap']}"
    return [
        {**value, **value["whole"], "split": "whole image", "time": "1", "area": "1"},
        {
            **value,
            **value["tiled"],
            "split": tiled,
            "time": f"{value['time_ratio']:.2f}",
            "area": f"{value['tile_area_ratio']:.2f}",
        },
    ]


TABLE = Table(
    "Patch splitting, one noise-prediction call (memory: {memory}):",
    [("image", "{width}×{height}"), ("split", "{split}"), ("seconds / call", "{seconds:.3f}"),
     ("time ratio", "{time}"), ("area ratio", "{area}"), ("peak MiB", "{peak_mib:.0f}"),
     ("added by the call (MiB)", "{added_mib:.0f}")],
    _rows,
)  # fmt: skip
