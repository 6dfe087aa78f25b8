"""The decoded-raw cache of the SID task: each raw file decoded once to a 16-bit ``.npy``.

Decoding a 24-Mpx raw file takes about a second, so the DataModule never decodes while
training: `SIDDataModule.prepare_data` (or ``python -m ucdir.prepare task=sid``, with a
progress bar) writes every missing entry, and the datasets memory-map the arrays and read only
the crop they need. Entries (under ``data.cache_dir``, mirroring the paths under ``data.root``):

- ``half/<path>.npy``: half-size render (H/2, W/2, 3) uint16 of a target, or of an input already
  amplified by its exposure ratio (``<path>.x<ratio>.npy``) — `input=rgb`;
- ``full/<path>.npy``: full-size render (H, W, 3) uint16 of a target — `input=packed`;
- ``packed/<path>.npy``: packed Bayer (H/2, W/2, 4) uint16 of an input, (raw − black) /
  (white − black) · 65535, not amplified (the ratio is applied when loading) — `input=packed`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np

from ucdir.data.raw import read_packed, render

CacheKind = Literal["half", "full", "packed"]


@dataclass(frozen=True)
class CacheJob:
    """Decode `source` (amplified by `ratio`) into the cache file `target`.

    Attributes:
        source: the raw file.
        target: the ``.npy`` file to write.
        kind: ``half`` / ``full`` render or ``packed`` Bayer.
        ratio: exposure amplification applied in the raw domain before rendering (1 = none).
        where: where the file was listed (list file and line), for error messages.
    """

    source: Path
    target: Path
    kind: CacheKind
    ratio: float = 1.0
    where: str = "data.root"


def cache_target(cache_dir: Path, root: Path, source: Path, kind: CacheKind, ratio: float) -> Path:
    """The cache file of `source` for `kind` (amplified inputs carry their ratio in the name)."""
    relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
    name = relative.name + (f".x{ratio:g}" if kind == "half" and ratio != 1.0 else "") + ".npy"
    return cache_dir / kind / relative.parent / name


def run_cache_job(job: CacheJob) -> Path:
    """Decode one raw file and write its cache entry atomically; returns the target."""
    if job.kind == "packed":
        array = np.rint(read_packed(job.source, job.where) * 65535).astype(np.uint16)
    else:
        array = render(job.source, job.ratio, half_size=job.kind == "half", key=job.where)
    job.target.parent.mkdir(parents=True, exist_ok=True)
    partial = job.target.with_name(f"{job.target.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as f:
            np.save(f, array)
        os.replace(partial, job.target)
    finally:
        partial.unlink(missing_ok=True)
    return job.target


def build_cache(
    jobs: Sequence[CacheJob],
    workers: int = 1,
    on_done: Callable[[CacheJob], None] | None = None,
) -> None:
    """Run `jobs` (in `workers` processes when > 1), calling `on_done` after each one.

    Worker processes are spawned, not forked: LibRaw's OpenMP threads in the parent make forked
    children deadlock.
    """
    if workers <= 1:
        for job in jobs:
            run_cache_job(job)
            if on_done is not None:
                on_done(job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_cache_job, job): job for job in jobs}
        for future in as_completed(futures):
            future.result()
            if on_done is not None:
                on_done(futures[future])
