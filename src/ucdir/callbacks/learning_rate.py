"""The learning rate in the logs: Lightning's `LearningRateMonitor`, idle without a logger."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_info


class LearningRateLogger(LearningRateMonitor):
    """Lightning's `LearningRateMonitor` (every step by default), doing nothing in a run without a
    logger (`logger=none`, the test and debug configs) instead of refusing to start.

    The key is the scheduler's name, `lr` (`UCDIRLitModule.configure_optimizers`), or
    `lr-<Optimizer>` for a constant learning rate.
    """

    def __init__(
        self, logging_interval: Literal["step", "epoch"] | None = "step", **kwargs: Any
    ) -> None:
        super().__init__(logging_interval=logging_interval, **kwargs)
        self.active = False

    def on_train_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self.active = bool(trainer.loggers)
        if not self.active:
            rank_zero_info("LearningRateLogger: no logger, the learning rate is not logged")
            return
        super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.active:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.active:
            super().on_train_epoch_start(trainer, *args, **kwargs)
