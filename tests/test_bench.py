"""`python -m ucdir.bench quick=true`: every section runs and reports what it should."""

import json
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import REPO, compose
from ucdir.bench import _by_device, bench
from ucdir.stats import network_macs


@pytest.mark.slow  # three Python processes (the bench and two memory probes): ~10 s
def test_quick_bench_prints_tables_and_json(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ucdir.bench", "quick=true", "threads=1"],
        cwd=tmp_path,  # nothing may be written into the working directory
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list(tmp_path.iterdir())
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    headers = [line for line in lines if line.startswith("| model |")]
    assert len(headers) == 5  # forward, restore, patch, train, precision
    assert result["quick"] and result["threads"] == 1 and result["device"]
    assert result["sections"] == ["forward", "restore", "patch", "train", "precision"]
    tiny = result["models"]["tiny"]
    assert set(tiny) == {"params", "forward", "restore", "patch", "train", "precision"}

    (forward,) = tiny["forward"]
    cfg = compose("stats", ["model=tiny"])
    macs = network_macs(instantiate(cfg.model.predictor), instantiate(cfg.model.denoiser), 32)
    assert forward["size"] == 32 and forward["gmacs"] == pytest.approx(macs["denoiser"] / 1e9)
    assert forward["gmac_per_s"] == pytest.approx(forward["gmacs"] / forward["seconds"])
    assert forward["official_cpu_2threads_s"] is None  # only for model=ucdir/small at 128/256

    assert [(r["sampler"], r["steps"]) for r in tiny["restore"]] == [("ddpm", 2), ("dpmpp", 2)]
    assert all(r["seconds_per_megapixel"] > 0 for r in tiny["restore"])

    patch = tiny["patch"]  # 64×48 image, tiles of 32 with 8 px margins: 3 × 2 tiles
    assert patch["tiles"] == 6 and patch["tile_area_ratio"] == pytest.approx(6 * 32 * 32 / 3072)
    assert patch["whole"]["peak_mib"] > 0 and patch["tiled"]["peak_mib"] > 0
    assert patch["time_ratio"] == pytest.approx(
        patch["tiled"]["seconds"] / patch["whole"]["seconds"]
    )

    assert tiny["train"]["crop"] == 32 and tiny["train"]["batch_size"] == 2
    assert tiny["train"]["samples_per_s"] > 0
    variants = [(r["dtype"], r["channels_last"]) for r in tiny["precision"]]
    assert variants == [
        ("fp32", False),
        ("fp32", True),
        ("bf16 autocast", False),
        ("bf16 autocast", True),
    ]


def test_bench_rejects_unknown_sections() -> None:
    cfg = compose("bench", ["sections=[forward,speed]"])
    with pytest.raises(ValueError, match="unknown sections"):
        bench(cfg)


def test_per_device_values() -> None:
    assert _by_device({"cpu": 128, "cuda": 256}, torch.device("cpu")) == 128
    assert _by_device(64, torch.device("cuda")) == 64
    with pytest.raises(ValueError, match="no value for device"):
        _by_device({"cuda": 256}, torch.device("cpu"))


def test_bench_config_defaults_follow_the_issue() -> None:
    cfg = compose("bench", [])
    assert list(cfg.models) == ["ucdir", "small"]
    assert list(cfg.forward.sizes) == [128, 256] and cfg.forward.repeats >= 5
    assert dict(cfg.restore.samplers) == {"ddpm": 50, "dpmpp": 10}
    assert (cfg.patch.height, cfg.patch.width, cfg.patch.tile, cfg.patch.overlap) == (
        768,
        1024,
        256,
        32,
    )
    assert dict(cfg.train.crop) == {"cpu": 128, "cuda": 256}
    assert REPO.joinpath("configs", "bench.yaml").is_file()
