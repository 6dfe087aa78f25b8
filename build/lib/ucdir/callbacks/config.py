"""Stores the resolved run configuration inside every checkpoint (restore/evaluate rebuild the
networks from it)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

CONFIG_KEY = "ucdir_config"


class StoreConfig(Callback):
    """Adds `config` (a plain dict: the resolved Hydra config) to each checkpoint."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
