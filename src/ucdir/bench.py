"""`python -m ucdir.bench [overrides]` (`make bench`): speed and memory on the current device.

For every model in `models` (configs/model/<name>.yaml), the sections (configs/bench.yaml):

- forward: the diffusion network's forward time (median after warm-up, batch 1, eval, no_grad)
  and achieved MAC/s (MACs counted as `ucdir.stats`), next to the official network's CPU times
  (notes §9.3: 2 threads, exact size, median of 5, the range over three runs);
- restore: one `restore()` (predictor + N sampler steps) per megapixel, for each sampler;
- patch: one noise-prediction call on a height × width image, tiled (`PatchSplit`) and whole, and
  the peak memory of each: on CUDA `torch.cuda.max_memory_allocated`; on a CPU the peak resident
  set size of a fresh process per configuration (Linux VmHWM, reset before the call), and what the
  call added to it;
- train: training throughput (objective forward + backward + AdamW step on random batches; no
  data loading), samples per second at the per-device batch;
- precision: fp32 vs bf16 autocast, with and without channels_last (forward and training).

Prints one Markdown table per section, then the whole result as one JSON line.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ucdir.config_files import config_dir
from ucdir.diffusion.patching import PatchSplit
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.stats import count_params, network_macs
from ucdir.types import Cond

log = logging.getLogger(__name__)

CONFIG_DIR = config_dir()
SECTIONS = ("forward", "restore", "patch", "train", "precision")

# notes §9.3: the official networks (DY3h inner 64 = model=ucdir, inner 32 = model=small) on a
# 2-core CPU, torch.set_num_threads(2), batch 1, at the exact size; min and max over three runs.
OFFICIAL_CPU_SECONDS: dict[tuple[str, int], tuple[float, float]] = {
    ("ucdir", 128): (0.68, 0.82),
    ("ucdir", 256): (4.17, 4.69),
    ("small", 128): (0.26, 0.30),
    ("small", 256): (1.04, 1.15),
}

Row = dict[str, Any]


def _by_device(value: Any, device: torch.device) -> Any:
    """`value`, or `value[device.type]` when it is written per device ({cpu: a, cuda: b})."""
    if isinstance(value, Mapping | DictConfig):
        if device.type not in value:
            raise ValueError(f"no value for device {device.type!r} in {dict(value)!r}")
        return value[device.type]
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    fn: Callable[[], object], warmup: int, repeats: int, device: torch.device
) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def compose_run(overrides: list[str]) -> DictConfig:
    """The `train` config with `overrides`, as `python -m ucdir.train` would compose it."""
    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides)


def _eps_inputs(
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
    x_t, lq, x_init = (_to_memory_format(t.to(device), channels_last) for t in (x_t, lq, x_init))
    return x_t, gamma, Cond(lq, x_init, scalars)


@torch.no_grad()
def _forward(
    denoiser: ConditionalUNet, x_t: Tensor, gamma: Tensor, cond: Cond, bf16: bool
) -> Tensor:
    with _precision(x_t.device, bf16):
        return denoiser(x_t, gamma, cond)


@contextmanager
def _precision(device: torch.device, bf16: bool) -> Iterator[None]:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        yield


def _to_memory_format(t: Tensor, channels_last: bool) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


class _Model:
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


@torch.no_grad()
def bench_forward(model: _Model, sizes: list[int], warmup: int, repeats: int) -> list[Row]:
    """Median forward time and achieved MAC/s of the diffusion network at each size²."""
    rows = []
    for size in sizes:
        x_t, gamma, cond = _eps_inputs(model.denoiser, size, size, model.device)
        call = partial(model.denoiser, x_t, gamma, cond)
        times = _timed(call, warmup, repeats, model.device)
        seconds = statistics.median(times)
        macs = model.denoiser_macs(size)
        official = OFFICIAL_CPU_SECONDS.get((model.name, size))
        rows.append(
            {
                "size": size,
                "seconds": seconds,
                "times": times,
                "gmacs": macs / 1e9,
                "gmac_per_s": macs / 1e9 / seconds,
                "official_cpu_2threads_s": list(official) if official else None,
            }
        )
    return rows


def bench_restore(model: _Model, size: int, samplers: Mapping[str, int], repeats: int) -> list[Row]:
    """Time of one whole-image `restore()` at size² per sampler, and per megapixel."""
    # imported here: diffusers is slow to import, and the patch section's probe processes
    # re-import this module without needing it
    from ucdir.restore import restore

    s_in = size // model.predictor.upscale
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(1, model.predictor.in_channels, s_in, s_in, generator=gen)
    lq = lq.to(model.device)
    x_t, gamma, cond = _eps_inputs(model.denoiser, size, size, model.device)
    with torch.no_grad():  # warm-up at this size
        model.predictor(lq * 2 - 1)
        model.denoiser(x_t, gamma, cond)
    rows = []
    for name, steps in samplers.items():
        cfg = compose_run([f"model={model.name}", f"sampler={name}", f"sampler.steps={steps}"])
        sampler = instantiate(cfg.sampler)

        def run(sampler: Any = sampler) -> None:
            gen = torch.Generator(device=model.device).manual_seed(0)
            restore(lq, model.predictor, model.denoiser, sampler, None, gen)

        seconds = statistics.median(_timed(run, 0, repeats, model.device))
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


def _memory_bytes() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes: Linux /proc VmRSS and VmHWM;
    elsewhere both are the peak from getrusage."""
    status = Path("/proc/self/status")
    if status.is_file():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return peak, peak


def _reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux ≥ 4.0); a no-op where that is not possible."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _measure_patch(denoiser: ConditionalUNet, spec: Mapping[str, Any]) -> Row:
    """Times `repeats` noise-prediction calls of `denoiser` on a height × width image, whole
    (`tile` None) or tiled, and the peak memory (CUDA: allocated; CPU: this process's RSS)."""
    device = next(denoiser.parameters()).device
    x_t, gamma, cond = _eps_inputs(denoiser, spec["height"], spec["width"], device)
    tile = spec["tile"]
    eps_fn = denoiser if tile is None else PatchSplit(tile, spec["overlap"]).wrap(denoiser)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_rss()
        before = _memory_bytes()[0]
    with torch.no_grad():
        times = _timed(lambda: eps_fn(x_t, gamma, cond), spec["warmup"], spec["repeats"], device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _memory_bytes()[1]
    return {
        "seconds": statistics.median(times),
        "peak_mib": peak / 2**20,
        "added_mib": (peak - before) / 2**20,
    }


def patch_job(spec: dict[str, Any]) -> Row:
    """The CPU patch measurement in a fresh process (so the peak RSS is this configuration's
    own): builds the denoiser from its resolved config, then `_measure_patch`."""
    torch.set_num_threads(spec["threads"])
    denoiser: ConditionalUNet = instantiate(spec["denoiser"]).eval()
    return _measure_patch(denoiser, spec)


def bench_patch(
    model: _Model,
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
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
            results[mode] = _measure_patch(model.denoiser, job)
        else:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                results[mode] = pool.apply(patch_job, (job,))
    return {
        "height": height,
        "width": width,
        "tile": tile,
        "overlap": overlap,
        "tiles": len(boxes),
        "tile_area_ratio": tile_area / (height * width),
        "time_ratio": results["tiled"]["seconds"] / results["whole"]["seconds"],
        "memory": "cuda max_memory_allocated"
        if model.device.type == "cuda"
        else "peak RSS of a fresh process",
        **results,
    }


def bench_train(
    model: _Model,
    crop: int,
    batch_size: int,
    warmup: int,
    steps: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> Row:
    """Training steps per second of a fresh LightningModule of the model config: the objective's
    forward, backward and the configured optimiser's step on one random batch (no data loading)."""
    device = model.device
    lit = instantiate(model.cfg.model).to(device).train()
    if channels_last:
        lit = lit.to(memory_format=torch.channels_last)
    optimizer = lit.configure_optimizers()
    gen = torch.Generator().manual_seed(0)
    s_in = crop // lit.predictor.upscale
    lq = torch.rand(batch_size, lit.predictor.in_channels, s_in, s_in, generator=gen)
    gt = torch.rand(batch_size, lit.denoiser.channels, crop, crop, generator=gen)
    n = len(lit.denoiser.aux_scalars)
    scalars = torch.rand(batch_size, n, generator=gen).to(device) if n else None
    lq = _to_memory_format(lq.to(device), channels_last)
    gt = _to_memory_format(gt.to(device), channels_last)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _precision(device, bf16):
            loss = lit.objective(lit.predictor, lit.denoiser, lq, gt, scalars).loss
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(_timed(step, warmup, steps, device))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "crop": crop,
        "batch_size": batch_size,
        "seconds_per_step": seconds,
        "samples_per_s": batch_size / seconds,
        "peak_mib": peak,
    }


def bench_precision(
    model: _Model,
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
            x_t, gamma, cond = _eps_inputs(denoiser, size, size, model.device, channels_last)
            forward = partial(_forward, denoiser, x_t, gamma, cond, bf16)
            seconds = statistics.median(_timed(forward, warmup, repeats, model.device))
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


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _device_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}), {threads} threads"


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Runs the configured sections for every model; returns everything (seconds, GMAC, MiB)."""
    if cfg.quick:
        cfg = OmegaConf.merge(cfg, cfg.quick_settings)  # type: ignore[assignment]
    device = _resolve_device(str(cfg.device))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(cfg.threads or cores or 1)
    torch.set_num_threads(threads)
    if cfg.sections is None:
        sections = list(SECTIONS[:4]) + (["precision"] if device.type == "cuda" else [])
    else:
        sections = list(cfg.sections)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    crop = int(_by_device(cfg.train.crop, device))
    batch_size = int(_by_device(cfg.train.batch_size, device))
    result: dict[str, Any] = {
        "device": _device_name(device, threads),
        "torch": torch.__version__,
        "threads": threads,
        "quick": bool(cfg.quick),
        "sections": sections,
        "models": {},
    }
    for name in cfg.models:
        log.info("%s: building", name)
        model = _Model(str(name), device)
        entry: dict[str, Any] = {"params": model.params()}
        if "forward" in sections:
            log.info("%s: forward", name)
            f = cfg.forward
            entry["forward"] = bench_forward(model, list(f.sizes), f.warmup, f.repeats)
        if "restore" in sections:
            log.info("%s: restore", name)
            r = cfg.restore
            samplers = {str(k): int(v) for k, v in r.samplers.items()}
            size = int(_by_device(r.size, device))
            entry["restore"] = bench_restore(model, size, samplers, r.repeats)
        if "patch" in sections:
            log.info("%s: patch splitting", name)
            p = cfg.patch
            entry["patch"] = bench_patch(
                model,
                p.height,
                p.width,
                p.tile,
                p.overlap,
                int(_by_device(p.warmup, device)),
                p.repeats,
                threads,
            )
        if "train" in sections:
            log.info("%s: training", name)
            entry["train"] = bench_train(model, crop, batch_size, cfg.train.warmup, cfg.train.steps)
        if "precision" in sections:
            log.info("%s: precision", name)
            q = cfg.precision
            entry["precision"] = bench_precision(
                model,
                q.size,
                q.warmup,
                q.repeats,
                crop,
                batch_size,
                q.train_steps,
            )
        result["models"][name] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


# Per section: caption and (column, format) pairs; a format is filled with one row of `bench`'s
# result (plus the derived fields of `_section_rows`).
_TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "forward": (
        "Diffusion network forward (batch 1, eval, no_grad; median):",
        [("input", "{size}²"), ("seconds", "{seconds:.4f}"), ("GMACs", "{gmacs:.2f}"),
         ("GMAC/s", "{gmac_per_s:.1f}"), ("official, CPU 2 threads (s)", "{official}")],
    ),
    "restore": (
        "One restoration, predictor + sampler, whole image, batch 1 (s / step = seconds / steps, "
        "predictor included; per megapixel at this size: attention grows faster than the area):",
        [("sampler", "{sampler} ({scheduler})"), ("steps", "{steps}"), ("image", "{size}²"),
         ("seconds", "{seconds:.2f}"), ("s / megapixel", "{seconds_per_megapixel:.1f}"),
         ("s / step", "{seconds_per_step:.3f}")],
    ),
    "patch": (
        "Patch splitting, one noise-prediction call (memory: {memory}):",
        [("image", "{width}×{height}"), ("split", "{split}"), ("seconds / call", "{seconds:.3f}"),
         ("time ratio", "{time}"), ("area ratio", "{area}"), ("peak MiB", "{peak_mib:.0f}"),
         ("added by the call (MiB)", "{added_mib:.0f}")],
    ),
    "train": (
        "Training, fp32 (objective + backward + AdamW; random batches):",
        [("crop", "{crop}"), ("batch (per device)", "{batch_size}"),
         ("s / step", "{seconds_per_step:.3f}"), ("samples / s", "{samples_per_s:.2f}")],
    ),
    "precision": (
        "Precision and memory format:",
        [("precision", "{dtype}"), ("channels_last", "{channels_last}"), ("input", "{size}²"),
         ("forward s", "{forward_seconds:.4f}"), ("speed-up", "{forward_speedup:.2f}"),
         ("train samples / s", "{train_samples_per_s:.2f}")],
    ),
}  # fmt: skip


def _section_rows(section: str, entry: Mapping[str, Any]) -> list[Row]:
    """The table rows of one model's result for `section`."""
    value = entry[section]
    if section == "forward":
        return [{**r, "official": _range(r["official_cpu_2threads_s"])} for r in value]
    if section == "patch":
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
    return [dict(value)] if isinstance(value, Mapping) else list(value)


def _range(r: list[float] | None) -> str:
    return f"{r[0]:.2f}–{r[1]:.2f}" if r else ""


def to_markdown(result: Mapping[str, Any]) -> str:
    """The result of `bench` as one Markdown table per section."""
    out = [f"Device: {result['device']}; torch {result['torch']}."]
    if result["quick"]:
        out[0] += " quick=true: a smoke run on a tiny model, the numbers mean nothing."
    for section in result["sections"]:
        caption, columns = _TABLES[section]
        memory = {m: e["patch"]["memory"] for m, e in result["models"].items() if "patch" in e}
        out += ["", caption.format(memory=", ".join(sorted(set(memory.values()))))]
        out.append("| model | " + " | ".join(name for name, _ in columns) + " |")
        out.append("|" + " --- |" * (len(columns) + 1))
        for model, entry in result["models"].items():
            for row in _section_rows(section, entry):
                cells = [fmt.format(**row) for _, fmt in columns]
                out.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(out)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="bench")
def main(cfg: DictConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bench: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    result = bench(cfg)
    sys.stdout.write(to_markdown(result) + "\n\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
