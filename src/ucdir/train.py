"""`python -m ucdir.train task=… [overrides]`: trains UCDIR (or the regression baseline)."""

from __future__ import annotations

import inspect
import logging
import pickle
from collections.abc import Callable
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.optim import Optimizer

from ucdir.callbacks import StoreConfig
from ucdir.checkpoints import check_checkpoint_file, load_state, unsafe_checkpoint
from ucdir.config_files import CONFIG_DIR
from ucdir.lit_module import UCDIRLitModule
from ucdir.overrides import run_command

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
    pretrained = None
    if cfg.get("pretrained"):
        from ucdir.hub import UCDIR

        # fine-tune / initialise from a shared model: its networks (config and weights) replace
        # the model group's, so the run's checkpoints describe what they hold
        pretrained = UCDIR.load(cfg.pretrained)
        with open_dict(cfg):
            cfg.model.predictor = pretrained.predictor_config
            cfg.model.denoiser = pretrained.denoiser_config
    model: UCDIRLitModule = instantiate(cfg.model)
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
    callbacks.append(StoreConfig(OmegaConf.to_container(cfg, resolve=True)))  # type: ignore[arg-type]
    loggers: list[Logger] = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


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
        try:  # Lightning reads the checkpoint once, weights only
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        except pickle.UnpicklingError as err:
            raise unsafe_checkpoint(cfg.ckpt_path, err) from err
    finally:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # multirun sweeps (e.g. with a sweeper plugin) optimise the returned value
    return metrics.get("val/psnr")


if __name__ == "__main__":
    run_command(main)
