"""Logs `lq | x_init | restored | gt` panels of the first validation images to the logger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor

from ucdir.types import PairBatch


def panel(lq: Tensor, x_init: Tensor, restored: Tensor, gt: Tensor) -> Tensor:
    """One (3, H, 4W) image in [0, 1]: lq | x_init | restored | gt (first batch item). A packed
    raw lq (4 channels) is shown as its R, mean G, B planes, upsampled to the output size."""
    lq = lq[:1].float()
    if lq.shape[1] == 4:
        lq = torch.stack([lq[:, 0], (lq[:, 1] + lq[:, 3]) / 2, lq[:, 2]], dim=1)
    lq = (
        F.interpolate(lq, size=gt.shape[-2:], mode="nearest")
        if lq.shape[-2:] != gt.shape[-2:]
        else lq
    )
    parts = [lq, x_init[:1].float(), restored[:1].float(), gt[:1].float()]
    return torch.cat([p.clamp(0, 1) for p in parts], dim=-1)[0]


class LogRestorations(Callback):
    """Sends image panels of the first `num_images` validation batches to the active logger:
    wandb images, TensorBoard images, or PNG files in the CSV logger's folder.

    Args:
        num_images: validation batches to show per validation run.
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx >= self.num_images or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not isinstance(outputs, dict) or "restoration" not in outputs:
            return
        out, b = outputs["restoration"], PairBatch(*batch)
        image = panel(b.lq, out.x_init, out.restored, b.gt).cpu()
        key, step = f"val/panel_{batch_idx}", trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key=key, images=[image], step=step, caption=["lq | x_init | restored | gt"]
                )
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, image, step)
            elif isinstance(logger, CSVLogger):
                folder = Path(logger.log_dir) / "images"
                folder.mkdir(parents=True, exist_ok=True)
                _save_png(image, folder / f"step{step:07d}_{batch_idx}.png")


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    array = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    Image.fromarray(array).save(path)
