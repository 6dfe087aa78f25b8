"""EMA of the weights with Lightning's `EMAWeightAveraging`, used only once it has started."""

from __future__ import annotations

import functools
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import Tensor


def warmup_ema(average: Tensor, current: Tensor, num_averaged: Tensor, decay: float) -> Tensor:
    """One EMA update whose decay warms up: min(decay, (1 + n) / (10 + n)) at the n-th update, so
    the average forgets its first weights quickly and reaches `decay` after a few thousand
    updates (decay 0.9999: ~90k). `avg_fn` of `torch.optim.swa_utils.AveragedModel`."""
    n = num_averaged.to(torch.float64)
    rate = torch.clamp((1 + n) / (10 + n), max=decay).to(average.dtype)
    return rate * average + (1 - rate) * current


class EMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging` (decay 0.9999, updates from step 5000 by default).

    The average starts from the weights at its first update (AveragedModel copies them), not
    from the random init (the official code's quirk). Until that first update the callback
    stays out of the way: validation, `last.ckpt` and the end of training use the current
    weights, not the untouched copy of the initial ones.

    Args:
        decay: the EMA decay (the paper: 0.9999).
        update_starting_at_step: first optimizer step that updates the average.
        update_every_n_steps: update the average every this many steps.
        warmup: let the decay grow as min(decay, (1 + n) / (10 + n)) over the first updates
            (`callbacks.ema.warmup=true`; off = the paper's constant decay).
    """

    def __init__(
        self,
        decay: float = 0.9999,
        update_starting_at_step: int = 5000,
        update_every_n_steps: int = 1,
        warmup: bool = False,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in (0, 1), got {decay!r}")
        super().__init__(
            decay=decay,
            update_starting_at_step=update_starting_at_step,
            update_every_n_steps=update_every_n_steps,
            **kwargs,
        )
        if warmup:
            self._kwargs["avg_fn"] = functools.partial(warmup_ema, decay=decay)
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
