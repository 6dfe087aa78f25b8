"""`python -m ucdir.train task=… [overrides]`: trains UCDIR (or the regression baseline)."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf, open_dict

from ucdir.callbacks import StoreConfig
from ucdir.checkpoints import check_checkpoint_file, load_state, unsafe_checkpoint
from ucdir.config_files import CONFIG_DIR
from ucdir.lit_module import UCDIRLitModule

log = logging.getLogger(__name__)


def _instantiate_all(nodes: DictConfig | None) -> list[Any]:
    if not nodes:
        return []
    return [instantiate(node) for node in nodes.values() if node is not None]


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


def train(cfg: DictConfig) -> dict[str, float]:
    """Runs one training job; returns the final logged metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    try:
        rank_zero_info(f"parameters: {model.num_parameters()}")
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
    main()
