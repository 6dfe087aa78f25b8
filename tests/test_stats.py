import json

from tests.commands import run_module
from tests.conftest import REPO


def test_stats_command_prints_official_figures() -> None:
    out = run_module("ucdir.stats", "input_size=128", timeout=300, check=True)
    line = out.stdout.strip().splitlines()[-1]
    stats = json.loads(line)
    assert stats["params"] == {"predictor": 7_760_163, "denoiser": 97_354_699, "total": 105_114_862}
    assert abs(stats["macs"]["denoiser"] - 46.24) < 0.01 * 46.24
    assert not list(REPO.glob("*.log")), "the stats command must not leave files behind"


def test_stats_accepts_overrides() -> None:
    out = run_module(
        "ucdir.stats",
        "model=tiny",
        "input_size=64",
        "model.denoiser.integration=concat",
        timeout=300,
        check=True,
    )
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["input_size"] == 64 and stats["params"]["denoiser"] > 0
