"""EMA of the weights with Lightning's `EMAWeightAveraging`, used only once it has started."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging` (decay 0.9999, updates from step 5000 by default).

    The average starts from the weights at its first update (AveragedModel copies them), not
    from the random init (the official code's quirk). Until that first update the callback
    stays out of the way: validation, `last.ckpt` and the end of training use the current
    weights, not the untouched copy of the initial ones.
    """

    def __init__(
        self,
        decay: float = 0.9999,
        update_starting_at_step: int = 5000,
        update_every_n_steps: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            decay=decay,
            update_starting_at_step=update_starting_at_step,
            update_every_n_steps=update_every_n_steps,
            **kwargs,
        )
        self._swapped = False

    def started(self) -> bool:
        """Whether the average has been updated at least once."""
        model = self._average_model
        return model is not None and int(model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swapped = self.started()
        if self._swapped:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average_model is not None and not self.started():
            # not started: the checkpoint's (average) weights are the current ones
            self._average_model.module.load_state_dict(pl_module.state_dict())
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
