"""One restore session: a model's networks with a sampler, a tiling, a precision, a device and
seeds, restoring one image or batch after another, and writing or handing over the results.

The restore command, `python -m ucdir.evaluate`, the web app, the demo and the validation of a
training run are thin callers: they open a session (from their composed config, or from the
networks they already hold) and call it per input.

    session = RestoreSession.open(cfg)              # cfg: configs/restore.yaml, eval.yaml, ...
    result = session(lq)                            # Restoration(restored, x_init, mean, std)
    session.save(result, src, out, bits=8, cfg=cfg) # PNG (+ mean, spread) and JSON sidecar
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from ucdir.device import resolve_device
from ucdir.diffusion.patching import Tiling
from ucdir.diffusion.sampling import SamplerLike, StepCallback
from ucdir.hub import UCDIR
from ucdir.loader import load_model
from ucdir.precision import Precision, prepare_networks, resolve_precision
from ucdir.restore.core import Restoration, restore
from ucdir.restore.outputs import Provenance, save_restoration
from ucdir.types import EpsFn

__all__ = ["RestoreSession", "RestoredBatch"]

log = logging.getLogger(__name__)


class RestoredBatch(NamedTuple):
    """One batch of `RestoreSession.batches`: names, inputs, ground truth, the restoration and
    the wall time of `restore()` (synchronised on CUDA)."""

    names: list[str]
    lq: Tensor
    gt: Tensor
    result: Restoration
    seconds: float


@dataclass
class RestoreSession:
    """A run of restorations; `__call__` restores one batch.

    Args:
        predictor: the initial predictor u.
        denoiser: the diffusion network.
        sampler: the sampler (the model's own unless one was chosen).
        patch: the tiling (`ucdir.diffusion.patching.Tiling`), None for whole images.
        precision: ``fp32`` or ``bf16`` (autocast; the networks prepared by `open`).
        guidance: fidelity–realness scale ≥ 0.
        num_samples: samples per input (> 1 adds their mean and spread).
        seed: the seed of the first input's generator (see `__call__`).
        model: the loaded model, when the session has one (its weights and task for sidecars).
    """

    predictor: nn.Module
    denoiser: EpsFn
    sampler: SamplerLike
    patch: Tiling | None = None
    precision: Precision = "fp32"
    guidance: float = 0.0
    num_samples: int = 1
    seed: int = 0
    model: UCDIR | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples!r}")

    @classmethod
    def open(cls, cfg: DictConfig, model: UCDIR | None = None) -> RestoreSession:
        """The session of a composed restore / evaluate config: `device`, `precision`, the
        model of `ckpt_path` / `pretrained` (unless `model` is given), `sampler` (none, or
        `sampler=model`: the model's own), `patch`, `seed`, `guidance`, `num_samples`.

        Raises:
            ValueError: bad settings; a model that cannot be loaded (see `load_model`).
        """
        device = resolve_device(str(cfg.get("device", "auto")))
        precision = resolve_precision(str(cfg.get("precision", "auto")), device)
        if model is None:
            model = load_model(cfg.get("ckpt_path"), cfg.get("pretrained"))
        model.to(device).eval()
        prepare_networks(precision, device, model.predictor, model.denoiser)
        session = cls.of(
            model,
            cfg.get("sampler"),
            patch=instantiate(cfg.patch) if cfg.get("patch") is not None else None,
            precision=precision,
            guidance=float(cfg.get("guidance", 0.0)),
            num_samples=int(cfg.get("num_samples", 1)),
            seed=int(cfg.get("seed", 0)),
        )
        log.info(
            "restoring on %s in %s (precision=%s) with %s, %d steps",
            device,
            precision,
            cfg.get("precision", "auto"),
            getattr(session.sampler, "name", type(session.sampler).__name__),
            session.sampler.steps,
        )
        return session

    @classmethod
    def of(
        cls,
        model: UCDIR,
        sampler: Any = None,
        *,
        patch: Tiling | None = None,
        precision: Precision = "fp32",
        guidance: float = 0.0,
        num_samples: int = 1,
        seed: int = 0,
    ) -> RestoreSession:
        """The session of a loaded model with its own sampler (or `sampler`, see
        `UCDIR.sampler_for`); the networks stay where and as they are."""
        return cls(
            model.predictor,
            model.denoiser,
            model.sampler_for(sampler),
            patch,
            precision,
            guidance,
            num_samples,
            seed,
            model,
        )

    @property
    def device(self) -> torch.device:
        return next(self.predictor.parameters()).device

    @property
    def task(self) -> dict[str, Any]:
        return dict(self.model.task) if self.model is not None else {}

    @property
    def aux_scalars(self) -> tuple[str, ...]:
        return tuple(getattr(self.denoiser, "aux_scalars", ()))

    def __call__(
        self,
        lq: Tensor,
        *,
        scalars: Tensor | None = None,
        seed: int | None = None,
        callback: StepCallback | None = None,
        denoiser: EpsFn | None = None,
    ) -> Restoration:
        """Restores a batch (B, C, H, W) in [0, 1] with a generator seeded `seed` (default: the
        session's), on `lq`'s device; `denoiser` replaces the session's (a counting wrapper)."""
        generator = torch.Generator(device=lq.device).manual_seed(
            self.seed if seed is None else seed
        )
        return restore(
            lq,
            self.predictor,
            self.denoiser if denoiser is None else denoiser,
            self.sampler,
            self.patch,
            generator,
            scalars=scalars,
            guidance=self.guidance,
            num_samples=self.num_samples,
            callback=callback,
            precision=self.precision,
        )

    def scalars(
        self, given: Mapping[str, Any], exposure_ratio: float | None = None
    ) -> Tensor | None:
        """The model's auxiliary scalars (1, K) from `scalars.<name>=`, and for raw input the
        ``exposure_ratio`` scalar (ratio / `task.max_ratio`, as in training).

        Raises:
            ValueError: a scalar the model needs is missing.
        """
        names = self.aux_scalars
        if not names:
            return None
        given = dict(given or {})
        if exposure_ratio is not None and "exposure_ratio" in names:
            cap = float(self.task.get("max_ratio", 300))
            given.setdefault("exposure_ratio", exposure_ratio / cap)
        missing = [n for n in names if n not in given]
        if missing:
            raise ValueError(
                f"scalars: this model needs auxiliary scalars {list(names)}; pass e.g. "
                + " ".join(f"+scalars.{n}=<value normalised like in training>" for n in missing)
            )
        return torch.tensor([[float(given[n]) for n in names]], device=self.device)

    def batches(self, loader: Iterable[Any], limit: int | None = None) -> Iterator[RestoredBatch]:
        """Restores the (lq, gt, scalars) batches of an evaluation loader in order, the batch
        that starts at image n seeded `seed + n`; stops after `limit` images."""
        seen = 0
        for batch in loader:
            lq, gt, scalars = (t.to(self.device) for t in batch)
            start = time.perf_counter()
            result = self(lq, scalars=scalars, seed=self.seed + seen)
            if lq.device.type == "cuda":
                torch.cuda.synchronize(lq.device)
            seconds = time.perf_counter() - start
            names = [f"{seen + i:05d}" for i in range(gt.shape[0])]
            yield RestoredBatch(names, lq, gt, result, seconds)
            seen += gt.shape[0]
            if limit is not None and seen >= limit:
                return

    def save(
        self,
        result: Restoration,
        src: Path,
        out: Path,
        cfg: DictConfig,
        *,
        bits: int = 8,
        scalars: Tensor | None = None,
        input_kind: str = "image",
        exposure_ratio: float | None = None,
        repaired_nonfinite: int = 0,
    ) -> dict[str, Any]:
        """Writes `out` (PNG), its companions and its JSON sidecar (what made it: the config
        `cfg`, the model, its weights' hash, the sampler, the tiling, ...); returns the sidecar.

        Raises:
            NonFiniteRestorationError: the restoration has NaN or inf values; nothing written.
        """
        if self.model is None or self.model.weights_file is None:
            raise ValueError("a session without a loaded model cannot write sidecars")
        made_by = Provenance(
            cfg,
            self.model.config,
            Path(self.model.weights_file),
            self.model.sha256,
            self.sampler,
            self.patch,
            scalars,
            self.device,
            input_kind,
            exposure_ratio,
            repaired_nonfinite,
            self.precision,
        )
        return save_restoration(result, src, out, bits, made_by)
