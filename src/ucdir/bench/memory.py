"""The one memory-probe helper of the benchmark figures: the peak memory of a call, and a fresh
process to measure it in on a CPU.

On CUDA the peak is `torch.cuda.max_memory_allocated` (reset before the call); on a CPU it is the
peak resident set size of the process (Linux VmHWM, reset to the current size before the call),
which only belongs to the measured call in a process that ran nothing bigger before: hence
`in_fresh_process`.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from ucdir.bench.timing import timed

Row = dict[str, Any]


def memory_kind(device: torch.device) -> str:
    """What `measure` reports as memory on `device` (printed in the tables' captions)."""
    return "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of a fresh process"


def rss_bytes() -> tuple[int, int]:
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


def reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux ≥ 4.0); a no-op where that is not possible."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(call: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Row:
    """Median seconds of `repeats` calls of `call` (after `warmup`) and the peak memory while they
    run: `peak_mib`, and `added_mib` above what was held before the first call (MiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        before = rss_bytes()[0]
    times = timed(call, warmup, repeats, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss_bytes()[1]
    return {
        "seconds": statistics.median(times),
        "peak_mib": peak / 2**20,
        "added_mib": (peak - before) / 2**20,
    }


def in_fresh_process(job: Callable[[dict[str, Any]], Row], spec: dict[str, Any]) -> Row:
    """`job(spec)` in a new (spawned) Python process, so that its peak RSS is the job's own.

    `job` must be a module-level function and `spec` plain data (both are pickled).
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(job, (spec,))


def measure_isolated(
    job: Callable[[dict[str, Any]], Row],
    spec: dict[str, Any],
    device: torch.device,
    on_cuda: Callable[[dict[str, Any]], Row],
) -> Row:
    """A memory figure measured where it belongs to the job alone: on CUDA in this process
    (`on_cuda(spec)`, after emptying the allocator's cache, peaks are per call there), on a CPU
    as `job(spec)` in a fresh process (the peak RSS of this one holds everything it ran)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return on_cuda(spec)
    return in_fresh_process(job, spec)
