"""`bench(cfg)`: every configured figure for every model, and the whole result as Markdown."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ucdir.bench import (
    akgm,
    data_pipeline,
    forward,
    fullsize,
    patch,
    precision,
    restore,
    shipped,
    training,
)
from ucdir.bench.networks import BenchModel
from ucdir.bench.table import Table
from ucdir.config_files import CONFIG_DIR
from ucdir.device import resolve_device
from ucdir.overrides import reports_user_errors
from ucdir.precision import cpu_name

log = logging.getLogger(__name__)

TABLES: dict[str, Table] = {
    "forward": forward.TABLE,
    "restore": restore.TABLE,
    "patch": patch.TABLE,
    "train": training.TABLE,
    "akgm": akgm.TABLE,
    "precision": precision.TABLE,
    "data": data_pipeline.TABLE,
    "fullsize": fullsize.TABLE,
    "shipped": shipped.TABLE,
}
SECTIONS = tuple(TABLES)
"""The figures, in the order of the default list."""
OPT_IN = ("fullsize",)
PER_RUN = ("shipped",)
"""Figures of the package's shipped models, measured once rather than for every model."""
"""Figures run only when named in ``sections`` (minutes long on a CPU)."""


def by_device(value: Any, device: torch.device) -> Any:
    """`value`, or `value[device.type]` when it is written per device ({cpu: a, cuda: b})."""
    if isinstance(value, Mapping | DictConfig):
        if device.type not in value:
            raise ValueError(f"no value for device {device.type!r} in {dict(value)!r}")
        return value[device.type]
    return value


def _device_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_name()}), {threads} threads"


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Runs the configured sections for every model; returns everything (seconds, GMAC, MiB)."""
    if cfg.quick:
        cfg = OmegaConf.merge(cfg, cfg.quick_settings)  # type: ignore[assignment]
    device = resolve_device(str(cfg.device))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(cfg.threads or cores or 1)
    torch.set_num_threads(threads)
    default = [s for s in SECTIONS if s not in OPT_IN]
    sections = default if cfg.sections is None else list(cfg.sections)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    crop = int(by_device(cfg.train.crop, device))
    batch_size = int(by_device(cfg.train.batch_size, device))
    result: dict[str, Any] = {
        "device": _device_name(device, threads),
        "torch": torch.__version__,
        "threads": threads,
        "quick": bool(cfg.quick),
        "sections": sections,
        "models": {},
    }
    if "shipped" in sections:
        log.info("shipped models")
        h = cfg.shipped
        result["shipped"] = shipped.bench_shipped(
            int(h.height),
            int(h.width),
            int(h.repeats),
            device,
            str(h.precision),  # type: ignore[arg-type]
        )
    models = cfg.models if set(sections) - set(PER_RUN) else []
    for name in models:
        log.info("%s: building", name)
        model = BenchModel(str(name), device)
        entry: dict[str, Any] = {"params": model.params()}
        if "forward" in sections:
            log.info("%s: forward", name)
            f = cfg.forward
            entry["forward"] = forward.bench_forward(model, list(f.sizes), f.warmup, f.repeats)
        if "restore" in sections:
            log.info("%s: restore", name)
            r = cfg.restore
            samplers = {str(k): int(v) for k, v in r.samplers.items()}
            size = int(by_device(r.size, device))
            entry["restore"] = restore.bench_restore(model, size, samplers, r.repeats)
        if "patch" in sections:
            log.info("%s: patch splitting", name)
            p = cfg.patch
            warmup = int(by_device(p.warmup, device))
            entry["patch"] = patch.bench_patch(
                model, p.height, p.width, p.tile, p.overlap, warmup, p.repeats, threads
            )
        if "train" in sections:
            log.info("%s: training", name)
            t = cfg.train
            entry["train"] = training.bench_train(model, crop, batch_size, t.warmup, t.steps)
        if "akgm" in sections:
            log.info("%s: AKGM layer", name)
            a = cfg.akgm
            warmup, repeats = int(by_device(a.warmup, device)), int(by_device(a.repeats, device))
            entry["akgm"] = akgm.bench_akgm(model, int(a.size), warmup, repeats, threads)
        if "precision" in sections:
            log.info("%s: precision", name)
            q = cfg.precision
            entry["precision"] = precision.bench_precision(
                model,
                q.size,
                q.warmup,
                q.repeats,
                crop,
                batch_size,
                q.train_steps,
                int(by_device(q.restore_size, device)),
            )
        if "data" in sections:
            log.info("%s: data pipeline", name)
            d = cfg.data
            entry["data"] = data_pipeline.bench_data(
                model,
                d.root,
                d.crop,
                d.batch_size,
                d.batches,
                list(d.workers),
                list(d.crops_per_image),
                list(d.cache),
            )
        if "fullsize" in sections:
            log.info("%s: full-size restoration", name)
            z = cfg.fullsize
            sampler = by_device(z.sampler, device)
            entry["fullsize"] = fullsize.bench_fullsize(
                model,
                int(z.height),
                int(z.width),
                int(z.tile),
                int(z.overlap),
                str(sampler.name),
                int(sampler.steps),
                threads,
                str(by_device(z.precision, device)),  # type: ignore[arg-type]
            )
        result["models"][name] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def to_markdown(result: Mapping[str, Any]) -> str:
    """The result of `bench` as one Markdown table per section."""
    out = [f"Device: {result['device']}; torch {result['torch']}."]
    if result["quick"]:
        out[0] += " quick=true: a smoke run on a tiny model, the numbers mean nothing."
    for section in result["sections"]:
        values = (
            result[section]
            if section in PER_RUN
            else {model: entry[section] for model, entry in result["models"].items()}
        )
        memory = {v["memory"] for v in values.values() if isinstance(v, Mapping) and "memory" in v}
        out += ["", *TABLES[section].lines(values, ", ".join(sorted(memory)))]
    return "\n".join(out)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="bench")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    """`python -m ucdir.bench [overrides]`: prints the tables, then the result as one JSON line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bench: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    result = bench(cfg)
    sys.stdout.write(to_markdown(result) + "\n\n" + json.dumps(result) + "\n")
