"""Helpers of the data tests: composing a task's config, tiny image folders, one Lightning step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor, nn

from tests.conftest import CONFIGS
from ucdir.data.base import PairDataModule
from ucdir.types import PairBatch


def compose_task(task: str, *overrides: str) -> DictConfig:
    """The composed config of `task` (with the `paths` group), as `ucdir.train` will see it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=None, overrides=["+paths=default", f"+task={task}", *overrides])


def datamodule(task: str, *overrides: str) -> PairDataModule:
    """Instantiate the task's `data` node from its composed config."""
    dm = instantiate(compose_task(task, *overrides).data)
    assert isinstance(dm, PairDataModule)
    return dm


def write_images(folder: Path, sizes: Sequence[tuple[int, int]], ext: str = ".png") -> list[Path]:
    """Random smooth RGB images of (width, height) `sizes`, written with Pillow."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        base = rng.random((max(h // 8, 2), max(w // 8, 2), 3)) * 255
        img = Image.fromarray(base.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        path = folder / f"img_{i:03d}{ext}"
        img.save(path)
        paths.append(path)
    return paths


class TinyRestorer(L.LightningModule):
    """A 3×3 conv (+ ×2 pixel shuffle for packed raw) trained with L1 on `PairBatch`es.

    Records the shapes of the batches Lightning fed it, for the tests to check.
    """

    def __init__(self, lq_channels: int = 3) -> None:
        super().__init__()
        self.scale = 2 if lq_channels == 4 else 1
        self.conv = nn.Conv2d(lq_channels, 3 * self.scale**2, 3, padding=1)
        self.seen: dict[str, list[PairBatch]] = {"train": [], "val": []}

    def forward(self, lq: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(lq), self.scale)

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        self.seen["train"].append(batch)
        loss = F.l1_loss(self(batch.lq), batch.gt)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: PairBatch, batch_idx: int) -> None:
        self.seen["val"].append(batch)
        self.log("val/l1", F.l1_loss(self(batch.lq), batch.gt))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def one_training_step(dm: PairDataModule, lq_channels: int = 3) -> TinyRestorer:
    """Run one training and one validation batch through Lightning (`fast_dev_run=1`)."""
    model = TinyRestorer(lq_channels)
    trainer = L.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.seen["train"]) == 1 and len(model.seen["val"]) == 1
    for batch in model.seen["train"] + model.seen["val"]:
        assert isinstance(batch, PairBatch)
        assert torch.isfinite(batch.lq).all() and torch.isfinite(batch.gt).all()
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    return model


def check_batch(
    batch: PairBatch, lq_shape: tuple[int, ...], gt_shape: tuple[int, ...], k: int
) -> None:
    """`batch` is a PairBatch of float32 images in [0, 1] with the given shapes and K scalars."""
    assert isinstance(batch, PairBatch)
    assert tuple(batch.lq.shape) == lq_shape and tuple(batch.gt.shape) == gt_shape
    assert batch.lq.dtype == batch.gt.dtype == batch.scalars.dtype == torch.float32
    assert tuple(batch.scalars.shape) == (gt_shape[0], k)
    for x in (batch.lq, batch.gt):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.fixture
def clean_folder(tmp_path: Path) -> Path:
    """A flat folder of 6 clean PNG/JPEG images of mixed sizes, one smaller than a 64 crop."""
    root = tmp_path / "clean"
    write_images(root, [(96, 80), (80, 72), (120, 64), (70, 90)])
    write_images(root / "sub", [(48, 40), (100, 100)], ext=".jpg")  # class-folder layout
    (root / "notes.txt").write_text("not an image")
    return root
