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

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np

from ucdir.atomic import atomic_path
from ucdir.data.images import MAX_PIXELS
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
        max_pixels: a file whose sensor claims more pixels is refused before it is unpacked.
    """

    source: Path
    target: Path
    kind: CacheKind
    ratio: float = 1.0
    where: str = "data.root"
    max_pixels: int = MAX_PIXELS


def cache_target(cache_dir: Path, root: Path, source: Path, kind: CacheKind, ratio: float) -> Path:
    """The cache file of `source` for `kind` (amplified inputs carry their ratio in the name)."""
    relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
    name = relative.name + (f".x{ratio:g}" if kind == "half" and ratio != 1.0 else "") + ".npy"
    return cache_dir / kind / relative.parent / name


def run_cache_job(job: CacheJob) -> Path:
    """Decode one raw file and write its cache entry atomically; returns the target."""
    if job.kind == "packed":
        packed = read_packed(job.source, job.where, job.max_pixels)
        array = np.rint(packed * 65535).astype(np.uint16)
    else:
        half = job.kind == "half"
        array = render(job.source, job.ratio, half, job.where, job.max_pixels)
    job.target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(job.target) as tmp, tmp.open("wb") as f:
        np.save(f, array)
    return job.target


def build_cache(
    jobs: Sequence[CacheJob],
    workers: int = 1,
    on_done: Callable[[CacheJob], None] | None = None,
) -> None:
    """Run `jobs` (in `workers` processes when > 1), calling `on_done` after each one.

    A file that cannot be decoded (unreadable, corrupt, over `max_pixels`) does not stop the
    others: every job still runs, and the failures are raised together at the end. Worker
    processes are spawned, not forked: LibRaw's OpenMP threads in the parent make forked
    children deadlock.

    Raises:
        ValueError: listing every file that could not be decoded, with its reason.
    """
    failed: list[str] = []

    def finish(job: CacheJob, run: Callable[[], Path]) -> None:
        try:
            run()
        except (ValueError, FileNotFoundError) as err:
            failed.append(str(err))
            return
        if on_done is not None:
            on_done(job)

    if workers <= 1:
        for job in jobs:
            finish(job, partial(run_cache_job, job))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_cache_job, job): job for job in jobs}
            for future in as_completed(futures):
                finish(futures[future], future.result)
    if failed:
        raise ValueError(
            f"{len(failed)} of {len(jobs)} raw files could not be decoded (the others are "
            "cached):\n" + "\n".join(failed)
        )
