"""Figure "data": the training data pipeline alone, next to one training step of the model.

Samples per second of a real training loader (`CleanImageDataModule` with JPEG quality 10 over
a folder of clean photos, or `SamplesDataModule` over the embedded samples when the folder is
absent: read, crop, flip,
JPEG round trip, collate), for every combination of loader workers, ``data.crops_per_image``
and ``data.cache``, then one timed training step of the model at the same crop and batch
(`ucdir.bench.training.bench_train`). "data ÷ model" above 1 means the loader outruns the
step. On a machine without a GPU the workers and the step share the same cores, so the two
rates do not simply add up.

The cache is each worker's own and fills during the timed batches; over a large folder a short
run sees few images twice, so it shows what the cache costs more than what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ucdir.bench.networks import BenchModel
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed
from ucdir.bench.training import bench_train
from ucdir.data.base import PairDataModule
from ucdir.data.folder import CleanImageDataModule
from ucdir.data.jpeg import JPEGDegradation
from ucdir.data.samples import SamplesDataModule
from ucdir.types import PairBatch


def pipeline_module(
    root: Path | None, crop: int, batch_size: int, workers: int, crops: int, cache: bool
) -> PairDataModule:
    """The JPEG task's DataModule over `root` (the embedded samples when None), set up for fit.

    The file check is off: this figure times the loader, not the start of a run.
    """
    settings: dict[str, Any] = {
        "degradation": JPEGDegradation(10, 10),
        "crop": crop,
        "eval_crop": None,
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": False,
        "cache": cache,
        "check": False,
        "crops_per_image": crops,
    }
    dm: PairDataModule
    if root is None:
        dm = SamplesDataModule(**settings)
    else:
        dm = CleanImageDataModule(str(root), **settings)
    dm.setup("fit")
    return dm


def _batches(dm: PairDataModule) -> Iterator[PairBatch]:
    """The training batches, epoch after epoch (a small folder ends an epoch within the run)."""
    loader = dm.train_dataloader()
    epoch = 0
    while True:
        yield from loader
        epoch += 1
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]


@lru_cache(maxsize=8)
def measure_pipeline(
    root: Path | None, crop: int, batch_size: int, workers: int, crops: int, cache: bool, n: int
) -> float:
    """Samples per second of `n` training batches, after one untimed batch (workers start);
    measured once per process for each setting (every model of a run shares it)."""
    dm = pipeline_module(root, crop, batch_size, workers, crops, cache)
    batches = _batches(dm)
    sizes: list[int] = []
    times = timed(lambda: sizes.append(len(next(batches).gt)), 1, n, torch.device("cpu"))
    return sum(sizes[1:]) / sum(times)


def bench_data(
    model: BenchModel,
    root: str | None,
    crop: int,
    batch_size: int,
    batches: int,
    workers: Sequence[int],
    crops_per_image: Sequence[int],
    cache: Sequence[bool],
) -> Row:
    """The pipeline's samples/s for every (workers, crops per image, cache), and the model's
    training samples/s at the same crop and batch (one step timed after one warm-up).

    Args:
        root: folder of clean training images; None or a missing folder: the embedded samples.
        crop, batch_size: training crop side and batch (per device) of both measurements.
        batches: batches timed per setting.
    """
    folder = Path(root) if root is not None and Path(root).is_dir() else None
    step = bench_train(model, crop, batch_size, 1, 1)
    rows = []
    for w in workers:
        for k in crops_per_image:
            for c in cache:
                rate = measure_pipeline(folder, crop, batch_size, w, k, c, batches)
                rows.append(
                    {
                        "workers": w,
                        "crops": k,
                        "cache": "on" if c else "off",
                        "samples_per_s": rate,
                        "ratio": rate / step["samples_per_s"],
                    }
                )
    return {
        "images": str(folder) if folder is not None else "embedded samples",
        "crop": crop,
        "batch_size": batch_size,
        "batches": batches,
        "model_step": step,
        "pipeline": rows,
    }


def _rows(value: Mapping[str, Any]) -> list[Row]:
    shared = {"crop": value["crop"], "batch_size": value["batch_size"]}
    rows = [
        {**shared, **row, "what": f"data: {value['images']}", "rate": f"{row['ratio']:.2f}"}
        for row in value["pipeline"]
    ]
    step = {"workers": "", "crops": "", "cache": "", "rate": "1"}
    step["samples_per_s"] = value["model_step"]["samples_per_s"]
    return [*rows, {**shared, **step, "what": "model training step"}]


TABLE = Table(
    "Training data pipeline alone (JPEG q10 pairs; timed batches after one; cache per worker, "
    "filled during the run) next to one fp32 training step:",
    [("measured", "{what}"), ("crop", "{crop}²"), ("batch", "{batch_size}"),
     ("workers", "{workers}"), ("crops / image", "{crops}"), ("cache", "{cache}"),
     ("samples / s", "{samples_per_s:.1f}"), ("data ÷ model", "{rate}")],
    _rows,
)  # fmt: skip
