"""Figure "forward": the diffusion network's forward time and achieved MAC/s, next to the official
network's CPU times."""

from __future__ import annotations

import statistics
from functools import partial

import torch

from ucdir.bench.networks import BenchModel, eps_inputs
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed

# notes §9.3: the official networks (DY3h inner 64 = model=ucdir, inner 32 = model=small) on a
# 2-core CPU, torch.set_num_threads(2), batch 1, at the exact size; min and max over three runs.
OFFICIAL_CPU_SECONDS: dict[tuple[str, int], tuple[float, float]] = {
    ("ucdir", 128): (0.68, 0.82),
    ("ucdir", 256): (4.17, 4.69),
    ("small", 128): (0.26, 0.30),
    ("small", 256): (1.04, 1.15),
}


@torch.no_grad()
def bench_forward(model: BenchModel, sizes: list[int], warmup: int, repeats: int) -> list[Row]:
    """Median forward time (batch 1, eval, no_grad) and achieved MAC/s at each size²."""
    rows = []
    for size in sizes:
        x_t, gamma, cond = eps_inputs(model.denoiser, size, size, model.device)
        call = partial(model.denoiser, x_t, gamma, cond)
        times = timed(call, warmup, repeats, model.device)
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


def _rows(value: list[Row]) -> list[Row]:
    return [{**r, "official": _range(r["official_cpu_2threads_s"])} for r in value]


def _range(r: list[float] | None) -> str:
    return f"{r[0]:.2f}–{r[1]:.2f}" if r else ""


TABLE = Table(
    "Diffusion network forward (batch 1, eval, no_grad; median):",
    [("input", "{size}²"), ("seconds", "{seconds:.4f}"), ("GMACs", "{gmacs:.2f}"),
     ("GMAC/s", "{gmac_per_s:.1f}"), ("official, CPU 2 threads (s)", "{official}")],
    _rows,
)  # fmt: skip
