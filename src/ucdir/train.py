"""`python -m ucdir.train task=… [overrides]`: trains UCDIR (or the regression baseline)."""

from __future__ import annotations

import inspect
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.optim import Optimizer

from ucdir.callbacks import StopOnSignal, StoreConfig
from ucdir.callbacks.config import CHOICES_KEY
from ucdir.callbacks.resume import check_resume_config, check_run_folder
from ucdir.callbacks.stop import last_checkpoint_path
from ucdir.checkpoints import (
    check_checkpoint_file,
    load_state,
    read_checkpoint,
    run_config,
    unsafe_checkpoint,
)
from ucdir.config_files import CONFIG_DIR
from ucdir.lit_module import UCDIRLitModule
from ucdir.loader import load_model
from ucdir.overrides import reports_user_errors, run_command
from ucdir.precision import trainer_precision

log = logging.getLogger(__name__)


def _instantiate_all(nodes: DictConfig | None) -> list[Any]:
    if not nodes:
        return []
    return [instantiate(node) for node in nodes.values() if node is not None]


def check_optimizer(factory: Callable[..., Optimizer], key: str = "model.optimizer") -> None:
    """Builds the optimizer once on a stand-in parameter, so that a bad value in the config
    (`model.optimizer.lr=abc`) fails before training with the key named, not inside Lightning.

    Raises:
        ValueError: a text where the optimizer's default is a number, or any argument the
            optimizer refuses, naming `key` and the values given.
    """
    given = dict(getattr(factory, "keywords", None) or {})
    try:
        params = inspect.signature(getattr(factory, "func", factory)).parameters
    except (TypeError, ValueError):  # no signature to read: the build below still checks
        params = {}  # type: ignore[assignment]
    for name, value in given.items():
        default = params[name].default if name in params else None
        numeric = isinstance(default, int | float | tuple) and not isinstance(default, bool)
        if numeric and isinstance(value, str):
            raise ValueError(f"{key}.{name}={value!r} is not a number (default: {default!r})")
    try:
        factory(params=[nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        values = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise ValueError(f"{key}: the optimizer refuses its arguments ({values}): {err}") from err


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, UCDIRLitModule, L.Trainer]:
    """Instantiates the DataModule, the LightningModule and the Trainer of a run config."""
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    pretrained, given = None, {}
    if cfg.get("pretrained"):
        # fine-tune / initialise from a shared model: its networks (config and weights) replace
        # the model group's, so the run's checkpoints describe what they hold
        pretrained = load_model(pretrained=cfg.pretrained)
        with open_dict(cfg):
            cfg.model.predictor = pretrained.predictor_config
            cfg.model.denoiser = pretrained.denoiser_config
        objective = cfg.model.get("objective") or {}
        if objective.get("teacher") == cfg.pretrained:  # distillation: the same model, once
            given["objective"] = instantiate(objective, teacher=pretrained)
    model: UCDIRLitModule = instantiate(cfg.model, **given)
    check_optimizer(model.optimizer_factory)
    if pretrained is not None:
        model.predictor.load_state_dict(pretrained.predictor.state_dict())
        model.denoiser.load_state_dict(pretrained.denoiser.state_dict())
    if cfg.model.freeze_predictor:
        if not cfg.predictor_ckpt:
            raise ValueError(
                "model.freeze_predictor=true needs predictor_ckpt=<checkpoint of a regression or "
                "UCDIR run> to load the initial predictor from"
            )
        load_state(model.predictor, cfg.predictor_ckpt, prefix="predictor.")
    callbacks: list[Callback] = _instantiate_all(cfg.get("callbacks"))
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    callbacks.append(StoreConfig(config, choices=_choices()))
    loggers: list[Logger] = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        precision=trainer_precision(cfg.trainer.get("precision"), cfg.trainer.get("accelerator")),
    )
    # after Lightning's ordering (ModelCheckpoints last): the stop's save sees every update
    trainer.callbacks.append(StopOnSignal())  # type: ignore[attr-defined]
    return datamodule, model, trainer


def _choices() -> dict[str, str] | None:
    """The config-group options of a command-line run (`model=tiny`), stored in checkpoints."""
    if not HydraConfig.initialized():
        return None
    choices = HydraConfig.get().runtime.choices
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra/") and v is not None}


def _resume_path(cfg: DictConfig, trainer: L.Trainer) -> str | None:
    """The checkpoint this fit resumes from: `ckpt_path`, or on SLURM without it, the newest
    `hpc_ckpt_<n>.ckpt` of the run folder (Lightning's auto-requeue resumes from it)."""
    if cfg.ckpt_path:
        return str(cfg.ckpt_path)
    if not SLURMEnvironment.detect():
        return None
    saved = Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
    numbered = [(int(p.stem.rsplit("_", 1)[1]), p) for p in saved if p.stem[9:].isdigit()]
    return str(max(numbered)[1]) if numbered else None


def check_resume(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Before fitting: one run per checkpoint folder, and a resume's config against the one
    stored in its checkpoint (`ucdir.callbacks.resume`)."""
    resume_from = _resume_path(cfg, trainer)
    check_run_folder(last_checkpoint_path(trainer).parent, resume_from)
    if resume_from is None:
        return
    # weights only, the clear errors of a bad file; tensors mapped, not read (Lightning reads them)
    ckpt = read_checkpoint(resume_from, mmap=True)
    try:
        stored = run_config(ckpt)
    except ValueError as err:
        log.warning("%s: the config is not compared", err)
        return
    current: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    allow = bool(cfg.get("resume_allow_changes", False))
    check_resume_config(stored, current, resume_from, ckpt.get(CHOICES_KEY), allow)


FULL_SIZE_PARAMS = 20_000_000
"""Above this many parameters (and 50k steps), a CPU run gets the pointer to the CPU recipes."""


def announce(cfg: DictConfig, model: UCDIRLitModule, trainer: L.Trainer) -> None:
    """Says what the run is about to do (model size, steps, device), and on a CPU, where the
    paper's setup would take weeks, where the CPU-sized runs are."""
    counts = model.num_parameters()
    counts["total"] = counts["predictor"] + counts["denoiser"]
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    steps = cfg.trainer.max_steps
    millions = {k: f"{v / 1e6:.1f} M" for k, v in counts.items()}
    if not trainer.is_global_zero:
        return
    log.info(
        f"training {cfg.task.name}: {millions['total']} parameters (predictor "
        f"{millions['predictor']}, denoiser {millions['denoiser']}), "
        f"{steps} steps, batch {cfg.data.batch_size}, crops {cfg.data.get('crop', '-')}, on "
        f"{trainer.num_devices} x {device} x {trainer.num_nodes} node(s), {trainer.precision}"
    )
    if device == "cpu" and counts["total"] > FULL_SIZE_PARAMS and steps > 50_000:
        log.warning(
            "no GPU: this is the paper's full-size setup (%.0f M parameters, %d steps, made for "
            "8 GPUs), which would take weeks on this CPU. For a CPU: `make demo` (minutes), "
            "`python -m ucdir.train experiment=jpeg_cpu` (the shipped model's recipe, about an "
            "hour), or `trainer=cpu model=demo trainer.max_steps=...`; on GPUs: trainer=gpu or "
            "trainer=ddp.",
            counts["total"] / 1e6,
            steps,
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job; returns the final logged metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    try:
        announce(cfg, model, trainer)
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        if cfg.ckpt_path:
            check_checkpoint_file(cfg.ckpt_path)  # missing, empty, truncated: a clear error
        check_resume(cfg, trainer)
        try:  # Lightning reads the checkpoint once, weights only
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        except pickle.UnpicklingError as err:
            raise unsafe_checkpoint(cfg.ckpt_path, err) from err
        except SIGTERMException as err:  # SIGTERM / SIGINT: last.ckpt saved, exit 128 + signal
            callbacks = trainer.callbacks  # type: ignore[attr-defined]
            stop = next(c for c in callbacks if isinstance(c, StopOnSignal))
            if stop.stopped is None:
                raise
            if trainer.is_global_zero:
                log.warning("%s", stop.stopped)
            if stop.stopped is err:
                raise
            raise stop.stopped from None
    finally:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@reports_user_errors
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # multirun sweeps (e.g. with a sweeper plugin) optimise the returned value
    return metrics.get("val/psnr")


if __name__ == "__main__":
    run_command(main)
