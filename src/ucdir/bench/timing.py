"""The one timing helper of every benchmark figure: untimed warm-up calls, then wall-clock
seconds of each timed call, the device synchronised around it."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA kernels run asynchronously; a CPU has none)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times
