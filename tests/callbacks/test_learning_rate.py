"""The learning rate is logged every step when the run has a logger, and nothing breaks without."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from tests.conftest import compose
from ucdir.callbacks.learning_rate import LearningRateLogger
from ucdir.lit_module import warmup_cosine


class _Linear(L.LightningModule):
    """A 1-parameter model with the lit module's scheduler setup (named `lr`, stepped per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        return (self.w * batch).square().mean()

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(6, 1), batch_size=1)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.1)
        schedule = warmup_cosine(optimizer, total_steps=6, warmup_steps=2)
        scheduler = {"scheduler": schedule, "interval": "step", "name": "lr"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _fit(logger: CSVLogger | bool, callback: LearningRateMonitor | None = None) -> None:
    L.Trainer(
        max_steps=6,
        logger=logger,
        callbacks=[callback or LearningRateLogger()],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    ).fit(_Linear())


def test_the_learning_rate_of_every_step_is_logged(tmp_path: Path) -> None:
    _fit(CSVLogger(tmp_path))
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        logged = [float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")]
    optimizer = torch.optim.AdamW([nn.Parameter(torch.ones(1))], lr=0.1)
    schedule = warmup_cosine(optimizer, total_steps=6, warmup_steps=2)
    expected = []
    for _ in range(6):
        expected.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert logged == expected  # 0.05, 0.1, then the cosine decay


def test_without_a_logger_it_stays_idle() -> None:
    with pytest.raises(MisconfigurationException, match="no logger"):
        _fit(False, LearningRateMonitor())  # why the subclass exists
    callback = LearningRateLogger()
    _fit(False, callback)
    assert not callback.active


def test_the_default_callbacks_log_the_learning_rate() -> None:
    cfg = compose("train", [])
    assert isinstance(instantiate(cfg.callbacks.lr_monitor), LearningRateLogger)
    assert cfg.callbacks.lr_monitor.logging_interval == "step"
