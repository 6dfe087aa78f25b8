"""Shared fixtures: paths, the shared sample data, and a deterministic CPU setup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHARED_DATA = REPO.parent / "shared" / "data"

# Nothing in the tests may reach the network.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def shared_data() -> Path:
    """The project's shared sample data; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def compose(config_name: str, overrides: list[str]):
    """A real config from configs/ (as the CLI would build it), composed without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def train_cfg(tmp_path: Path):
    """Factory: the train config with the tiny debug setup, writing under tmp_path."""

    def make(*overrides: str):
        return compose(
            "train",
            ["debug=tiny", f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path}", *overrides],
        )

    return make


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`last.ckpt` of a one-step tiny training run (shared by the restore and evaluate tests)."""
    from ucdir.train import train

    out = tmp_path_factory.mktemp("run")
    cfg = compose(
        "train",
        [
            "debug=tiny",
            f"paths.output_dir={out}",
            "trainer.fast_dev_run=false",
            "trainer.max_steps=1",
            "trainer.limit_val_batches=0",
        ],
    )
    train(cfg)
    return out / "checkpoints" / "last.ckpt"
