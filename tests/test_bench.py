"""`python -m ucdir.bench quick=true`: every section runs and reports what it should."""

import json

import pytest
import torch
from hydra.utils import instantiate

from tests.commands import run_module
from tests.conftest import REPO, compose
from ucdir.bench import SECTIONS, bench, by_device, to_markdown
from ucdir.bench.akgm import product_sum
from ucdir.bench.memory import in_fresh_process, measure
from ucdir.bench.timing import timed
from ucdir.hub import SHIPPED_DIR, shipped_models
from ucdir.models.guidance import AdaptiveKernelGuidance
from ucdir.stats import network_macs
from ucdir.types import Cond


@pytest.mark.slow  # five Python processes (the bench and four memory probes): ~15 s
def test_quick_bench_prints_tables_and_json(tmp_path) -> None:
    out = run_module(
        "ucdir.bench",
        "quick=true",
        "threads=1",
        cwd=tmp_path,  # nothing may be written into the working directory
        timeout=300,
        check=True,
    )
    assert not list(tmp_path.iterdir())
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    headers = [line for line in lines if line.startswith("| model |")]
    assert len(headers) == 7  # forward, restore, patch, train, akgm, precision, shipped
    assert result["quick"] and result["threads"] == 1 and result["device"]
    assert result["sections"] == [
        "forward", "restore", "patch", "train", "akgm", "precision", "shipped"
    ]  # fmt: skip
    assert out.stdout.startswith(to_markdown(result))  # the tables are those of the JSON result
    tiny = result["models"]["tiny"]
    assert set(tiny) == {"params", "forward", "restore", "patch", "train", "akgm", "precision"}

    (forward,) = tiny["forward"]
    cfg = compose("stats", ["model=tiny"])
    macs = network_macs(instantiate(cfg.model.predictor), instantiate(cfg.model.denoiser), 32)
    assert forward["size"] == 32 and forward["gmacs"] == pytest.approx(macs["denoiser"] / 1e9)
    fastest = min(forward["seconds"], forward["channels_last_seconds"])
    assert forward["gmac_per_s"] == pytest.approx(forward["gmacs"] / fastest)
    assert forward["official_formulation_seconds"] > 0  # measured in this run
    assert forward["official_cpu_2threads_s"] is None  # only for model=ucdir/small at 128/256

    assert [(r["sampler"], r["steps"]) for r in tiny["restore"]] == [("ddpm", 2), ("dpmpp", 2)]
    assert all(r["seconds_per_megapixel"] > 0 for r in tiny["restore"])

    patch = tiny["patch"]  # 64×48 image, tiles of 32 with 8 px margins: 3 × 2 tiles
    assert patch["tiles"] == 6 and patch["tile_area_ratio"] == pytest.approx(6 * 32 * 32 / 3072)
    assert patch["whole"]["peak_mib"] > 0 and patch["tiled"]["peak_mib"] > 0
    assert patch["time_ratio"] == pytest.approx(
        patch["tiled"]["seconds"] / patch["whole"]["seconds"]
    )

    akgm = tiny["akgm"]  # model=tiny: width 16 × mults[0] 1, 4 kernel bases, a 32² tile
    assert (akgm["channels"], akgm["kernels"], akgm["size"]) == (16, 4, 32)
    assert akgm["basis_mib"] == pytest.approx(16 * 4 * 32 * 32 * 4 / 2**20)
    assert akgm["speedup"] == pytest.approx(akgm["product_sum"]["seconds"] / akgm["bmm"]["seconds"])
    assert all(akgm[f]["peak_mib"] > 0 for f in ("product_sum", "bmm"))
    assert "| `tiny` | C=16, N=4 | 32² | batched matmul (now) |" in out.stdout

    assert tiny["train"]["crop"] == 32 and tiny["train"]["batch_size"] == 2
    assert tiny["train"]["samples_per_s"] > 0
    variants = [(r["dtype"], r["channels_last"]) for r in tiny["precision"]]
    assert variants == [
        ("fp32", False),
        ("fp32", True),
        ("bf16 autocast", False),
        ("bf16 autocast", True),
    ]
    for row in tiny["precision"]:
        assert row["restore_size"] == 32
        assert row["restore_1_seconds"] > 0 and row["restore_10_seconds"] > row["restore_1_seconds"]
        assert row["train_samples_per_s"] > 0
    assert tiny["precision"][0]["forward_speedup"] == 1.0

    # the shipped models, once (not per bench model), each with its own sampler
    shipped = result["shipped"]
    assert set(shipped) == set(shipped_models()) and "jpeg-cpu-distilled" in shipped
    assert [shipped[n]["calls"] for n in ("jpeg-cpu", "jpeg-cpu-distilled")] == [10, 1]
    assert shipped["jpeg-cpu-regression"]["calls"] == 1
    for name, row in shipped.items():
        assert (row["width"], row["height"]) == (48, 32) and row["seconds"] > 0
        weights = SHIPPED_DIR / name / "model.safetensors"
        assert row["megabytes"] == pytest.approx(weights.stat().st_size / 1e6)
    assert "| `jpeg-cpu-distilled` | distilled-1 | 1 | 48×32 | fp32 |" in out.stdout


def test_bench_rejects_unknown_sections() -> None:
    cfg = compose("bench", ["sections=[forward,speed]"])
    with pytest.raises(ValueError, match="unknown sections"):
        bench(cfg)


def test_per_device_values() -> None:
    assert by_device({"cpu": 128, "cuda": 256}, torch.device("cpu")) == 128
    assert by_device(64, torch.device("cuda")) == 64
    with pytest.raises(ValueError, match="no value for device"):
        by_device({"cuda": 256}, torch.device("cpu"))


def test_default_sections_include_precision_on_every_device() -> None:
    small = ["models=[]", "shipped.height=16", "shipped.width=16", "shipped.repeats=1"]
    sections = bench(compose("bench", small))["sections"]
    assert sections == [s for s in SECTIONS if s != "fullsize"]  # opt-in: minutes on a CPU
    assert {"forward", "restore", "patch", "train", "akgm", "precision"} <= set(sections)


def test_the_full_size_figure_restores_in_tiles_and_reports_time_and_memory() -> None:
    """`sections=[fullsize]` at toy sizes (the real one: 2120×1416, the paper's networks)."""
    cfg = compose("bench", ["models=[tiny]", "sections=[fullsize]", "threads=1",
                            "fullsize.height=64", "fullsize.width=96", "fullsize.tile=32",
                            "fullsize.overlap=8", "fullsize.sampler.cpu.steps=2"])  # fmt: skip
    result = bench(cfg)
    row = result["models"]["tiny"]["fullsize"]
    assert (row["tiles"], row["sampler"], row["steps"]) == (15, "dpmpp", 2)
    assert row["seconds"] > 0 and row["peak_mib"] > 100
    assert "| `tiny` | 96×64 | 15 × 32, overlap 8 | dpmpp, 2 steps | fp32 |" in to_markdown(result)
    defaults = compose("bench", []).fullsize
    assert (defaults.width, defaults.height) == (2120, 1416)
    assert dict(defaults.sampler.cuda) == {"name": "ddpm", "steps": 50}


def test_official_formulation_equals_the_layer_and_is_undone() -> None:
    """The forward figure's official column computes what our network computes, and the
    network is its own again after the context."""
    from ucdir.bench.akgm import official_formulation
    from ucdir.models import ConditionalUNet

    torch.manual_seed(0)
    net = ConditionalUNet(width=16, mults=(1, 2), attn_levels=(), kernels=4).eval()
    x = torch.randn(1, 3, 16, 16)
    cond = Cond(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), None)
    gamma = torch.full((1,), 0.5)
    with torch.no_grad():
        ours = net(x, gamma, cond)
        with official_formulation(net):
            assert all("forward" in vars(m) for m in net.modules() if hasattr(m, "bases"))
            official = net(x, gamma, cond)
        assert not any("forward" in vars(m) for m in net.modules())
    torch.testing.assert_close(official, ours, atol=1e-5, rtol=1e-5)


def test_akgm_reference_fusion_equals_the_layer() -> None:
    """The figure's "before" computes what the layer computes (or it would compare apples with
    pears), for spatial and per-sample M."""
    g = torch.Generator().manual_seed(0)
    layer = AdaptiveKernelGuidance(16, 4)
    h = torch.randn(2, 16, 9, 13, generator=g)
    for m in (torch.randn(2, 4, 9, 13, generator=g), torch.randn(2, 4, 1, 1, generator=g)):
        with torch.no_grad():
            torch.testing.assert_close(product_sum(layer, h, m), layer(h, m))


def test_timing_and_memory_helpers() -> None:
    calls: list[int] = []
    times = timed(lambda: calls.append(1), 2, 3, torch.device("cpu"))
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        timed(lambda: None, 0, 0, torch.device("cpu"))
    # in a fresh process: in this one, memory freed by earlier tests may hold the peak already
    row = in_fresh_process(_keep_64_mib, {})
    assert row["added_mib"] >= 60 and row["peak_mib"] >= row["added_mib"]  # the 64 MiB it kept


def _keep_64_mib(spec: dict) -> dict:
    held: list[torch.Tensor] = []
    return measure(lambda: held.append(torch.ones(64 * 2**20 // 4)), torch.device("cpu"), 0, 1)


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
    assert (cfg.shipped.width, cfg.shipped.height) == (768, 512)  # issue 26's photo size
    assert REPO.joinpath("configs", "bench.yaml").is_file()
