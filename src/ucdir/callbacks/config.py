"""Stores the resolved run configuration inside every checkpoint (restore/evaluate rebuild the
networks from it), with the config-group options it was composed from (`model=tiny`, ...)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ucdir.checkpoints import CHOICES_KEY, CONFIG_KEY

__all__ = ["CHOICES_KEY", "CONFIG_KEY", "StoreConfig"]


class StoreConfig(Callback):
    """Adds `config` (a plain dict: the resolved Hydra config) to each checkpoint, and `choices`
    (group -> option, e.g. `{"model": "tiny"}`) when given."""

    def __init__(self, config: dict[str, Any], choices: dict[str, str] | None = None) -> None:
        self.config = config
        self.choices = choices

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        if self.choices is not None:
            checkpoint[CHOICES_KEY] = self.choices
