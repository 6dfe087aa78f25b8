"""Figure "shipped": the models shipped in the package, each restoring one photo-sized image
(768×512 by default) whole, with its own sampler: seconds, network calls and weights size, the
budget of the shipped models (one network call in ≤ 10 s on a 2-core CPU, ≤ 20 MB in all)."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from ucdir.bench.table import Row, Table
from ucdir.bench.timing import timed
from ucdir.hub import shipped_models
from ucdir.loader import load_model
from ucdir.precision import Precision, prepare_networks
from ucdir.restore.session import RestoreSession


def bench_shipped(
    height: int, width: int, repeats: int, device: torch.device, precision: Precision = "fp32"
) -> dict[str, Row]:
    """{shipped name: seconds of one whole-image restoration of a random height × width RGB
    image with the model's own sampler (after one untimed restoration), its network calls and
    the size of its weights file}."""
    lq = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    rows: dict[str, Row] = {}
    for name in shipped_models():
        model = load_model(pretrained=name)
        prepare_networks(precision, device, model.predictor, model.denoiser)
        session = RestoreSession.of(model, precision=precision, seed=0)

        def call(session: RestoreSession = session) -> None:
            session(lq)

        seconds = statistics.median(timed(call, 1, repeats, device))
        sampler = session.sampler
        rows[name] = {
            "sampler": getattr(sampler, "name", type(sampler).__name__),
            "calls": int(getattr(sampler, "steps", 1)),
            "height": height,
            "width": width,
            "precision": precision,
            "seconds": seconds,
            "megabytes": Path(str(model.weights_file)).stat().st_size / 1e6,
        }
    return rows


TABLE = Table(
    "The shipped models, one whole-image restoration each with the model's own sampler "
    "(budget: 1 network call in ≤ 10 s on 2 CPU cores, ≤ 20 MB of weights in all):",
    [("sampler", "{sampler}"), ("network calls", "{calls}"), ("image", "{width}×{height}"),
     ("precision", "{precision}"), ("seconds", "{seconds:.2f}"), ("weights MB", "{megabytes:.1f}")],
)  # fmt: skip
