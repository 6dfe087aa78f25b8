"""Figure "forward": the diffusion network's forward time and achieved MAC/s (fp32, contiguous and
channels-last), next to the official network's computation measured in the same run (our network
with the AKGM computed the official way: `ucdir.bench.akgm.official_fusion`; the networks are
equal to 3e-6) and the official networks' times from the notes (an older AVX2 machine)."""

from __future__ import annotations

import statistics
from functools import partial

import torch

from ucdir.bench.akgm import official_formulation
from ucdir.bench.networks import BenchModel, eps_inputs
from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed

# notes §9.3: the official networks (DY3h inner 64 = model=ucdir, inner 32 = model=small) on a
# 2-core AVX2 CPU, torch.set_num_threads(2), batch 1, at the exact size; min and max of three runs.
OFFICIAL_CPU_SECONDS: dict[tuple[str, int], tuple[float, float]] = {
    ("ucdir", 128): (0.68, 0.82),
    ("ucdir", 256): (4.17, 4.69),
    ("small", 128): (0.26, 0.30),
    ("small", 256): (1.04, 1.15),
}


@torch.no_grad()
def bench_forward(model: BenchModel, sizes: list[int], warmup: int, repeats: int) -> list[Row]:
    """Median forward time (batch 1, eval, no_grad, fp32) and achieved MAC/s at each size²:
    contiguous weights and inputs, channels-last, and the official formulation (contiguous)."""
    rows = []
    for size in sizes:
        seconds = {}
        for layout in ("contiguous", "channels_last", "official"):
            channels_last = layout == "channels_last"
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            denoiser = model.denoiser.to(memory_format=fmt)
            x_t, gamma, cond = eps_inputs(denoiser, size, size, model.device, channels_last)
            call = partial(denoiser, x_t, gamma, cond)
            if layout == "official":
                with official_formulation(denoiser):
                    times = timed(call, warmup, repeats, model.device)
            else:
                times = timed(call, warmup, repeats, model.device)
            seconds[layout] = statistics.median(times)
        model.denoiser.to(memory_format=torch.contiguous_format)
        macs = model.denoiser_macs(size)
        official = OFFICIAL_CPU_SECONDS.get((model.name, size))
        rows.append(
            {
                "size": size,
                "seconds": seconds["contiguous"],
                "channels_last_seconds": seconds["channels_last"],
                "official_formulation_seconds": seconds["official"],
                "gmacs": macs / 1e9,
                "gmac_per_s": macs / 1e9 / min(seconds["contiguous"], seconds["channels_last"]),
                "official_cpu_2threads_s": list(official) if official else None,
            }
        )
    return rows


def _rows(value: list[Row]) -> list[Row]:
    return [{**r, "official": _range(r["official_cpu_2threads_s"])} for r in value]


def _range(r: list[float] | None) -> str:
    return f"{r[0]:.2f}–{r[1]:.2f}" if r else ""


TABLE = Table(
    "Diffusion network forward (fp32, batch 1, eval, no_grad; median; GMAC/s of the faster "
    "layout; official formulation = the official AKGM computation, measured now; official "
    "network = notes §9.3, an AVX2 machine):",
    [("input", "{size}²"), ("contiguous s", "{seconds:.4f}"),
     ("channels-last s", "{channels_last_seconds:.4f}"),
     ("official formulation s", "{official_formulation_seconds:.4f}"), ("GMACs", "{gmacs:.2f}"),
     ("GMAC/s", "{gmac_per_s:.1f}"), ("official network, AVX2 (s)", "{official}")],
    _rows,
)  # fmt: skip
