"""Shared fixtures: paths, the shared sample data, and a deterministic CPU setup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero_only
from lightning.pytorch.utilities.rank_zero import rank_zero_only

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHARED_DATA = REPO.parent / "shared" / "data"

# Nothing in the tests may reach the network.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# `make test` runs the suite in parallel worker processes (pytest-xdist, `-n`): the cores are
# shared out between them, and the commands a test starts inherit its share.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _rank_zero() -> Iterator[None]:
    """Every test starts as rank 0: a Trainer built with a rank (the SLURM test's rank 5) sets
    Lightning's process-wide rank, which would silence the loggers of the tests after it."""
    yield
    rank_zero_only.rank = fabric_rank_zero_only.rank = 0


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
