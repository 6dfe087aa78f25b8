"""`last.ckpt` every N minutes of training, beside the step checkpoints."""

from __future__ import annotations

import datetime

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class TimedLastCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint(train_time_interval=...)` writing only `last.ckpt` (no files
    of its own), at the end of the first step after each `minutes` of training.

    Unlike a plain ModelCheckpoint that never saved, it writes nothing when training ends: the
    end of a run is the step checkpoint's, whose `last.ckpt` (saved at a step boundary) resumes
    exactly; one saved in `on_train_end`, after the EMA weights are swapped in, would not.

    Args:
        dirpath: the checkpoint folder (the step checkpoint's: one `last.ckpt`).
        minutes: the training time between two saves, > 0.
    """

    def __init__(self, dirpath: str, minutes: float = 30.0) -> None:
        if not minutes > 0:
            raise ValueError(f"callbacks.time_checkpoint.minutes must be > 0, got {minutes!r}")
        super().__init__(
            dirpath=dirpath,
            train_time_interval=datetime.timedelta(minutes=minutes),
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        return
