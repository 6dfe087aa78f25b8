"""The thin LightningModule: wires the two networks, the objective and the sampler; logs."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ucdir.data.order import seed_batch
from ucdir.device import compile_unavailable
from ucdir.diffusion.objective import Loss
from ucdir.diffusion.patching import Tiling
from ucdir.diffusion.sampling import SamplerLike
from ucdir.metrics import Metrics, MetricsResult
from ucdir.metrics.specs import VALIDATION_METRICS
from ucdir.restore.core import Restoration
from ucdir.restore.session import RestoreSession
from ucdir.types import PairBatch

log = logging.getLogger(__name__)

Objective = Callable[..., Loss]
Scorer = Callable[..., Metrics]

VAL_METRICS = VALIDATION_METRICS
"""The validation default: the paper's six and DISTS (missing weights: that metric is skipped)."""
SCORED = ("restored", "x_init")
"""What validation scores: the restoration (`val/<metric>`) and x_init (`val/x_init/<metric>`)."""


def warmup_linear(optimizer: Optimizer, warmup_steps: int = 0) -> LambdaLR:
    """A linear warm-up of the learning rate over `warmup_steps` (from 1/`warmup_steps` of its
    base value), then constant; `warmup_steps=0` is the paper's constant rate."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
    return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(warmup_steps, 1)))


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, final: float = 0.0
) -> LambdaLR:
    """Linear warm-up over `warmup_steps`, then a cosine decay of the learning rate to `final` ×
    its base value at `total_steps` (kept there afterwards); stepped every training step."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_cosine needs 0 <= warmup_steps < total_steps, got {warmup_steps!r}, "
            f"{total_steps!r}"
        )
    if not 0.0 <= final <= 1.0:
        raise ValueError(f"final must be in [0, 1], got {final!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


class UCDIRLitModule(L.LightningModule):
    """UCDIR (or the regression baseline) as a LightningModule.

    Validation and test restore each image with `restore()` and score the restoration and x_init
    with `ucdir.metrics.Metrics`, the scorer of `python -m ucdir.evaluate` (per-image PSNR/SSIM
    on 8-bit images averaged over images, NIQE, LPIPS-Alex, FID/KID over 256² patches of the whole
    set, gathered over processes under DDP). Logged at the end of each run over the set as
    `val/<metric>` and `val/x_init/<metric>` (`test/...` for `trainer.test`); the per-image rows
    stay in `results[stage]` for the callbacks.

    Args:
        predictor: the initial predictor u.
        denoiser: the conditional diffusion network f.
        objective: `ResidualObjective` (UCDIR) or `RegressionObjective` (baseline).
        sampler: the validation sampler (a few-step one by default).
        patch: tiling used in validation (None = whole images).
        optimizer: factory taking the trainable parameters (AdamW, lr 1e-4, wd 0.01).
        freeze_predictor: keep u fixed (`model.freeze_predictor=true`, weights loaded by the
            training entry point from `predictor_ckpt`) instead of training it jointly.
        val_seed: seed of the validation sampling noise (same noise at every validation).
        val_metrics: metric names scored in validation and test (`Metrics` names).
        scorer: factory of the scorer, called with `metrics=`; its other options (patch size,
            KID subsets, what a missing weights file does) are the config's.
        sanity_steps: sampler steps of Lightning's sanity validation before training (the
            sampler's own count when lower): a broken validation fails in the first minute.
        lr_schedule: None (constant) or a factory taking the optimizer and returning a scheduler
            stepped every training step (`warmup_linear`, `warmup_cosine`: the config group
            ``model/lr_schedule=constant|warmup|cosine``).
        compile: `torch.compile` the denoiser's forward in place (`model.compile=true`; the
            weights keep their names, so checkpoints and exports are unchanged).
        channels_last: keep weights and training batches channels-last (faster convolutions
            on tensor cores and AMX); None = on CUDA, and on the CPU under bf16 precision.
    """

    def __init__(
        self,
        predictor: nn.Module,
        denoiser: nn.Module,
        objective: Objective,
        sampler: SamplerLike,
        patch: Tiling | None = None,
        optimizer: Callable[..., Optimizer] = torch.optim.AdamW,
        freeze_predictor: bool = False,
        val_seed: int = 0,
        val_metrics: Sequence[str] = VAL_METRICS,
        scorer: Scorer = Metrics,
        sanity_steps: int = 2,
        lr_schedule: Callable[[Optimizer], LRScheduler] | None = None,
        compile: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if sanity_steps < 1:
            raise ValueError(f"sanity_steps must be >= 1, got {sanity_steps!r}")
        self.predictor, self.denoiser = predictor, denoiser
        self.objective, self.sampler, self.patch = objective, sampler, patch
        self.optimizer_factory = optimizer
        self.freeze_predictor, self.val_seed = freeze_predictor, val_seed
        self.val_metrics, self.scorer, self.sanity_steps = list(val_metrics), scorer, sanity_steps
        self.lr_schedule = lr_schedule
        self.compile_denoiser, self.channels_last = compile, channels_last
        if freeze_predictor:
            self.predictor.requires_grad_(False)
        self.scores: dict[str, Metrics] = {}  # built on first use: not part of the checkpoint
        self.results: dict[str, dict[str, MetricsResult]] = {}
        self._seen = 0
        self._nonfinite: Tensor | None = None  # any non-finite loss since the host last looked
        self._compile_checked = False  # setup runs once per stage: compile (or warn) once

    def on_train_epoch_start(self) -> None:
        if self.freeze_predictor:
            self.predictor.eval()

    def setup(self, stage: str) -> None:
        # (not configure_model: Lightning's EMA refuses models that define it)
        if self.compile_denoiser and not self._compile_checked:
            self._compile_checked = True
            # the trainer's device: setup runs before Lightning moves the model there
            trainer = self._trainer
            device = trainer.strategy.root_device if trainer is not None else self.device
            reason = compile_unavailable(device)
            if reason is not None:
                log.warning("model.compile=true: %s; the denoiser runs eagerly", reason)
            else:
                self.denoiser.compile()

    def on_fit_start(self) -> None:
        if self._channels_last():
            self.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, batch: PairBatch, batch_idx: int) -> None:
        # dropout and the objective's noise from the batch's place in the run: exact resume
        # (the run's batch count, which Lightning checkpoints; batch_idx restarts every epoch)
        seed_batch(self.trainer.fit_loop.epoch_loop.total_batch_idx, self.global_rank)

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        if self._channels_last():
            fmt = torch.channels_last
            batch = batch._replace(
                lq=batch.lq.contiguous(memory_format=fmt), gt=batch.gt.contiguous(memory_format=fmt)
            )
        out = self.objective(self.predictor, self.denoiser, batch.lq, batch.gt, batch.scalars)
        self._check_finite(out)
        self.log("train/loss", out.loss, prog_bar=True)
        self.log("train/main", out.main)
        if out.aux.requires_grad:
            self.log("train/aux_l1", out.aux)
        for name, value in (out.parts or {}).items():
            if name != "aux":
                self.log(f"train/{name}", value)
        return out.loss

    def _check_finite(self, out: Loss) -> None:
        """Raises on a non-finite loss. Reading a CUDA tensor on the host waits for the GPU, so
        there the step only records it on the device and the host looks every
        `trainer.log_every_n_steps` steps (when Lightning's logging reads the loss anyway); on
        a CPU it looks every step."""
        bad = ~torch.isfinite(out.loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        trainer, every = self._trainer, 1
        step = trainer.global_step + 1 if trainer is not None else 1
        if trainer is not None and self.device.type == "cuda":
            every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
            if step % every and step < int(trainer.max_steps or 0):
                return
        if bool(self._nonfinite):
            self._nonfinite = None
            window = f"step {step - 1}" if every == 1 else f"steps up to {step - 1}"
            raise FloatingPointError(
                f"non-finite training loss {float(out.loss.detach())} at {window} "
                f"(main {float(out.main.detach())}, aux {float(out.aux.detach())}); lower the "
                "learning rate, use trainer.gradient_clip_val=1.0, or check the data"
            )
        self._nonfinite = None

    def on_validation_epoch_start(self) -> None:
        self._start_scoring()

    def validation_step(self, batch: PairBatch, batch_idx: int) -> dict[str, Any]:
        return self._evaluate(PairBatch(*batch), batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_start(self) -> None:
        self._start_scoring()

    def test_step(self, batch: PairBatch, batch_idx: int) -> dict[str, Any]:
        return self._evaluate(PairBatch(*batch), batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr_schedule is None:
            return optimizer
        scheduler = {"scheduler": self.lr_schedule(optimizer), "interval": "step", "name": "lr"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _channels_last(self) -> bool:
        if self.channels_last is None:  # CUDA, or bf16 autocast on the CPU (oneDNN's bf16 layout)
            trainer = self._trainer
            bf16 = trainer is not None and str(trainer.precision).startswith("bf16")
            return self.device.type == "cuda" or bf16
        return self.channels_last

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of both networks (logged at the start of training)."""
        return {
            "predictor": sum(p.numel() for p in self.predictor.parameters()),
            "denoiser": sum(p.numel() for p in self.denoiser.parameters()),
        }

    def _start_scoring(self) -> None:
        if not self.scores:
            first = self.scorer(metrics=self.val_metrics)
            self.scores = {
                kind: first if i == 0 else first.spawn() for i, kind in enumerate(SCORED)
            }
        for metrics in self.scores.values():
            metrics.reset()
            metrics.to(self.device)
        self._seen = 0

    def _positions(self, count: int) -> list[int]:
        """Dataset indices of the next `count` samples of this process: evaluation loaders go in
        order, and under DDP process r gets samples r, r + N, ... (`ucdir.data.base.EvalShards`),
        so an image has the same name for any process count; indices past the end are padding."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        first, self._seen = self._seen, self._seen + count
        return [rank + world * (first + i) for i in range(count)]

    def _eval_size(self) -> int | None:
        loaders = (
            self.trainer.test_dataloaders if self.trainer.testing else self.trainer.val_dataloaders
        )
        dataset = getattr(loaders, "dataset", None)
        return len(dataset) if dataset is not None else None  # type: ignore[arg-type]

    def _evaluate(self, batch: PairBatch, batch_idx: int) -> dict[str, Any]:
        positions = self._positions(batch.gt.shape[0])
        size = self._eval_size()
        keep = [i for i, p in enumerate(positions) if size is None or p < size]
        if not keep:  # padding of the last DDP round
            return {}
        sampler = self.sampler
        if self.trainer.sanity_checking and sampler.steps > self.sanity_steps:
            sampler = dataclasses.replace(sampler, steps=self.sanity_steps)  # type: ignore[type-var]
        session = RestoreSession(self.predictor, self.denoiser, sampler, self.patch)
        out = session(batch.lq, scalars=batch.scalars, seed=self.val_seed + positions[0])
        if len(keep) < len(positions):
            index = torch.tensor(keep, device=batch.gt.device)
            out = Restoration(out.restored[index], out.x_init[index])
            batch = PairBatch(*(t[index.to(t.device)] for t in batch))
        names = [f"{positions[i]:05d}" for i in keep]
        self.scores["restored"].update(out.restored, batch.gt, names)
        self.scores["x_init"].update(out.x_init, batch.gt, names)
        return {"restoration": out, "names": names, "batch": batch}

    def _log_scores(self, stage: str) -> None:
        self.results[stage] = {kind: m.compute() for kind, m in self.scores.items()}
        values = {}
        for kind, result in self.results[stage].items():
            prefix = stage if kind == "restored" else f"{stage}/{kind}"
            for name, value in result.aggregate.items():
                if name in ("images", "patches"):
                    continue
                values[f"{prefix}/{name}"] = float(value)
        # identical on every process (the scorer gathers); sync_dist only silences Lightning
        if (psnr := values.pop(f"{stage}/psnr", None)) is not None:
            self.log(f"{stage}/psnr", psnr, prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
