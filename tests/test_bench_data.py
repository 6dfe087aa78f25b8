"""The data-pipeline figure (`ucdir.bench.data_pipeline`) on tiny settings."""

from __future__ import annotations

import torch

from ucdir.bench.data_pipeline import TABLE, bench_data
from ucdir.bench.networks import BenchModel


def test_the_data_figure_has_a_row_per_setting_and_the_model_step() -> None:
    model = BenchModel("tiny", torch.device("cpu"))
    value = bench_data(model, "no/such/folder", 32, 4, 2, [0, 1], [1, 2], [False, True])
    assert value["images"] == "embedded samples"
    settings = [(r["workers"], r["crops"], r["cache"]) for r in value["pipeline"]]
    assert settings == [(w, k, c) for w in (0, 1) for k in (1, 2) for c in ("off", "on")]
    step = value["model_step"]
    assert step["crop"] == 32 and step["batch_size"] == 4 and step["samples_per_s"] > 0
    for row in value["pipeline"]:
        assert row["samples_per_s"] > 0
        assert row["ratio"] == row["samples_per_s"] / step["samples_per_s"]
    lines = TABLE.lines({"tiny": value})
    assert lines[1].startswith("| model | measured | crop | batch | workers | crops / image |")
    rows = lines[3:]
    assert len(rows) == 9
    assert rows[5].startswith("| `tiny` | data: embedded samples | 32² | 4 | 1 | 1 | on | ")
    assert rows[-1].startswith("| `tiny` | model training step | 32² | 4 |  |  |  | ")
    assert rows[-1].endswith(" | 1 |")
