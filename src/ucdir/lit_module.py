"""The thin LightningModule: wires the two networks, the objective and the sampler; logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ucdir.diffusion.memory import AutoPatchSplit
from ucdir.diffusion.objective import Loss
from ucdir.diffusion.patching import NaivePatchSplit, PatchSplit
from ucdir.restore import Restoration, SamplerLike, restore
from ucdir.types import PairBatch

Objective = Callable[..., Loss]


class UCDIRLitModule(L.LightningModule):
    """UCDIR (or the regression baseline) as a LightningModule.

    Args:
        predictor: the initial predictor u.
        denoiser: the conditional diffusion network f.
        objective: `ResidualObjective` (UCDIR) or `RegressionObjective` (baseline).
        sampler: the validation sampler (a few-step one by default).
        patch: tiling used in validation (None = whole images).
        optimizer: factory taking the trainable parameters (AdamW, lr 1e-4, wd 0.01).
        freeze_predictor: keep u fixed (`model.predictor_mode=frozen`, weights loaded by the
            training entry point from a regression checkpoint) instead of training it jointly.
        val_seed: seed of the validation sampling noise (same noise at every validation).
    """

    def __init__(
        self,
        predictor: nn.Module,
        denoiser: nn.Module,
        objective: Objective,
        sampler: SamplerLike,
        patch: PatchSplit | AutoPatchSplit | NaivePatchSplit | None = None,
        optimizer: Callable[..., Optimizer] = torch.optim.AdamW,
        freeze_predictor: bool = False,
        val_seed: int = 0,
    ) -> None:
        super().__init__()
        self.predictor, self.denoiser = predictor, denoiser
        self.objective, self.sampler, self.patch = objective, sampler, patch
        self.optimizer_factory = optimizer
        self.freeze_predictor, self.val_seed = freeze_predictor, val_seed
        if freeze_predictor:
            self.predictor.requires_grad_(False)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_psnr_init = PeakSignalNoiseRatio(data_range=1.0)

    def on_train_epoch_start(self) -> None:
        if self.freeze_predictor:
            self.predictor.eval()

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        out = self.objective(self.predictor, self.denoiser, batch.lq, batch.gt, batch.scalars)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"non-finite training loss {float(out.loss.detach())} at step {self.global_step} "
                f"(main {float(out.main.detach())}, aux {float(out.aux.detach())}); lower the "
                "learning rate, use "
                "trainer.gradient_clip_val=1.0, or check the data"
            )
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/main", out.main)
        if out.aux.requires_grad:
            self.log("train/aux_l1", out.aux)
        return out.loss

    def validation_step(self, batch: PairBatch, batch_idx: int) -> dict[str, Any]:
        generator = torch.Generator(device=batch.lq.device).manual_seed(self.val_seed + batch_idx)
        out: Restoration = restore(
            batch.lq,
            self.predictor,
            self.denoiser,
            self.sampler,
            self.patch,
            generator,
            scalars=batch.scalars,
        )
        self.val_psnr(out.restored, batch.gt)
        self.val_ssim(out.restored, batch.gt)
        self.val_psnr_init(out.x_init, batch.gt)
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/ssim", self.val_ssim)
        self.log("val/psnr_x_init", self.val_psnr_init)
        return {"restoration": out}

    def configure_optimizers(self) -> Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.optimizer_factory(params)

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of both networks (logged at the start of training)."""
        return {
            "predictor": sum(p.numel() for p in self.predictor.parameters()),
            "denoiser": sum(p.numel() for p in self.denoiser.parameters()),
        }
