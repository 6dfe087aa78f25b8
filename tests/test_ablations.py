"""The paper's Table 4 rows: one experiment config each, all trainable; the ablation table."""

import math

import pytest
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONFIGS, compose
from ucdir.ablation_table import PAPER, ablation_names, count_row
from ucdir.ablation_table import main as ablation_table_main
from ucdir.stats import network_macs
from ucdir.train import train

ABLATION_DIR = CONFIGS / "experiment" / "ablation"
ABLATIONS = sorted(p.stem for p in ABLATION_DIR.glob("*.yaml"))


def test_every_table4_row_has_a_config() -> None:
    assert len(PAPER) == 11
    assert set(ABLATIONS) == set(PAPER)
    assert ablation_names() == list(PAPER)  # the paper's order


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_trains_one_step(name: str, train_cfg) -> None:
    cfg = train_cfg(  # one optimiser step, no validation, no checkpoint, a narrow predictor
        f"experiment=ablation/{name}",
        "model.predictor.width=8",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=0",
        "callbacks=none",
    )
    knobs = OmegaConf.load(ABLATION_DIR / f"{name}.yaml").model.denoiser
    assert knobs, "an ablation sets at least one knob of the diffusion network"
    for key, value in knobs.items():  # applied over the debug model, not lost under it
        assert cfg.model.denoiser[key] == value
    assert cfg.model.denoiser.width == 16  # still the tiny debug network
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])


@pytest.mark.parametrize("name", ABLATIONS)
def test_stats_config_composes_with_every_ablation(name: str) -> None:
    cfg = compose("stats", [f"experiment=ablation/{name}", "model=tiny", "input_size=32"])
    denoiser = instantiate(cfg.model.denoiser)
    knobs = OmegaConf.load(ABLATION_DIR / f"{name}.yaml").model.denoiser
    assert denoiser.guide == knobs.get("guide", "initial")
    assert denoiser.integration == knobs.get("integration", "akgm")
    assert cfg.run_name == f"ablation_{name}" and cfg.tags == ["ablation", "table4", name]


def test_meta_device_count_equals_a_real_cpu_count() -> None:
    cfg = compose("stats", ["experiment=ablation/concatenation", "model=tiny", "input_size=32"])
    cpu = network_macs(instantiate(cfg.model.predictor), instantiate(cfg.model.denoiser), 32)
    with torch.device("meta"):
        predictor, denoiser = instantiate(cfg.model.predictor), instantiate(cfg.model.denoiser)
    assert network_macs(predictor, denoiser, 32, device="meta") == cpu


def _cells(table: str, name: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| `ablation/{name}`"))
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_ablation_table_full_row_matches_the_official_network(capsys) -> None:
    ablation_table_main(["--rows", "full", "wo_spatial_guidance"])
    out = capsys.readouterr().out
    full = _cells(out, "full")
    # params, MACs at 128² (official naive 46.24 G), at 160² (official forward 72.56 G), the
    # convolutions alone at 160² (official 71.73 G, the paper's 71.7), paper MACs, paper LPIPS.
    # Our AKGM weights its kernel bases with one batched matmul, which the counter sees (+0.08 G
    # at 128², +0.12 G at 160²); the official elementwise product and sum is not counted.
    assert full[1:] == ["Ours", "97,354,699", "46.32", "72.68", "71.73", "71.7", "0.222"]
    no_guide = _cells(out, "wo_spatial_guidance")
    assert float(no_guide[3]) < 46.32 and no_guide[6] == "70.9"


def test_count_row_rejects_an_unknown_config() -> None:
    with pytest.raises(ValueError, match="no ablation config"):
        count_row("no_such_row")


def test_sweep_config_lists_every_ablation() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = hydra_compose("train", ["+hparams_search=ablation_table4"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    jobs = BasicSweeper.split_arguments(parsed, None)[0]
    assert sorted(job[0] for job in jobs) == sorted(f"experiment=ablation/{n}" for n in ABLATIONS)
