"""Validation images to the loggers: `lq | x_init | restored | gt` panels, wandb's per-image
table, and (optionally) every validation image as PNG files that `evaluate mode=score` rescores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor

from ucdir.metrics.specs import METRICS
from ucdir.png import write_png
from ucdir.types import PairBatch


def _show(lq: Tensor, size: tuple[int, ...]) -> Tensor:
    """lq as an RGB image of `size`: packed raw (4 channels) as its R, mean G, B planes."""
    lq = lq.float()
    if lq.shape[1] == 4:
        lq = torch.stack([lq[:, 0], (lq[:, 1] + lq[:, 3]) / 2, lq[:, 2]], dim=1)
    return F.interpolate(lq, size=size, mode="nearest") if lq.shape[-2:] != size else lq


def panel(lq: Tensor, x_init: Tensor, restored: Tensor, gt: Tensor) -> Tensor:
    """One (3, H, 4W) image in [0, 1]: lq | x_init | restored | gt (first batch item). A packed
    raw lq (4 channels) is shown as its R, mean G, B planes, upsampled to the output size."""
    parts = [_show(lq[:1], tuple(gt.shape[-2:])), x_init[:1], restored[:1], gt[:1]]
    return torch.cat([p.float().clamp(0, 1) for p in parts], dim=-1)[0]


def thumbnail(image: Tensor, side: int) -> Tensor:
    """(3, H, W) -> (3, h, w) with max(h, w) ≤ `side` (area downscale), in [0, 1]."""
    h, w = image.shape[-2:]
    scale = side / max(h, w)
    if scale >= 1:
        return image.float().clamp(0, 1)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None].float(), size=size, mode="area")[0].clamp(0, 1)


def _array(image: Tensor) -> Any:
    return (image.detach().cpu().permute(1, 2, 0).numpy() * 255).round().astype("uint8")


class LogRestorations(Callback):
    """Shows validation results in the loggers.

    - Panels `lq | x_init | restored | gt` of the first `num_images` validation batches: wandb
      images, TensorBoard images, or PNG files in the CSV logger's folder.
    - In wandb, a table `val/images` per validation: one row per image (name, every metric of
      the restoration and of x_init, thumbnails of lq, x_init, restored and gt); thumbnails for
      the first `table_images` images of process 0, metrics for all.
    - With `save_images`, every validation image as 8-bit PNG under
      `<run dir>/val_images/step<N>/{lq,x_init,restored,gt}/<name>.png` (all processes), so that
      `python -m ucdir.evaluate mode=score restored=… gt=…` recomputes the logged values.

    Args:
        num_images: validation batches shown as panels per validation run.
        table_images: images with thumbnails in the wandb table (0 = no table).
        thumbnail_size: longest side of a table thumbnail (px).
        save_images: write every validation image to the run directory.
    """

    def __init__(
        self,
        num_images: int = 4,
        table_images: int = 16,
        thumbnail_size: int = 128,
        save_images: bool = False,
    ) -> None:
        if min(num_images, table_images) < 0 or thumbnail_size < 1:
            raise ValueError(
                "num_images and table_images must be >= 0 and thumbnail_size > 0, got "
                f"{num_images!r}, {table_images!r}, {thumbnail_size!r}"
            )
        self.num_images, self.table_images = num_images, table_images
        self.thumbnail_size, self.save_images = thumbnail_size, save_images
        self._thumbs: dict[str, list[Tensor]] = {}

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._thumbs = {}

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "restoration" not in outputs:
            return
        out, b = outputs["restoration"], PairBatch(*outputs.get("batch", batch))
        names: list[str] = outputs.get("names") or [f"{batch_idx}_{i}" for i in range(len(b.gt))]
        lq = _show(b.lq, tuple(b.gt.shape[-2:]))
        images = {"lq": lq, "x_init": out.x_init, "restored": out.restored, "gt": b.gt}
        if self.save_images:
            self._save(trainer, names, images)
        if not trainer.is_global_zero:
            return
        for i, name in enumerate(names):
            if len(self._thumbs) < self.table_images:
                self._thumbs[name] = [
                    thumbnail(v[i], self.thumbnail_size).cpu() for v in images.values()
                ]
        if batch_idx < self.num_images:
            self._log_panel(trainer, batch_idx, panel(b.lq, out.x_init, out.restored, b.gt).cpu())

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.table_images:
            return
        results = getattr(pl_module, "results", {}).get("val")
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not results or not wandb_loggers:
            return
        import wandb

        metric_names = list(METRICS)
        kinds = list(results)
        per_kind = {kind: {str(r["name"]): r for r in results[kind].per_image} for kind in kinds}
        present = [
            (kind, m)
            for kind in kinds
            for m in metric_names
            if any(m in r for r in per_kind[kind].values())
        ]
        columns = ["name", *(m if k == "restored" else f"{k}/{m}" for k, m in present)]
        columns += ["lq", "x_init", "restored", "gt"]
        rows = []
        for name in per_kind[kinds[0]]:
            values = [_finite(per_kind[k][name].get(m)) for k, m in present]
            thumbs = self._thumbs.get(name)
            pictures = [wandb.Image(_array(t)) for t in thumbs] if thumbs else [None] * 4
            rows.append([name, *values, *pictures])
        for logger in wandb_loggers:
            logger.log_table(key="val/images", columns=columns, data=rows, step=trainer.global_step)

    def _log_panel(self, trainer: L.Trainer, batch_idx: int, image: Tensor) -> None:
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

    def _save(self, trainer: L.Trainer, names: list[str], images: dict[str, Tensor]) -> None:
        root = Path(trainer.default_root_dir) / "val_images" / f"step{trainer.global_step:07d}"
        for kind, batch in images.items():
            folder = root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in zip(names, batch, strict=True):
                _save_png(image.float().clamp(0, 1).cpu(), folder / f"{name}.png")


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _save_png(image: Tensor, path: Path) -> None:
    write_png(image, path)
