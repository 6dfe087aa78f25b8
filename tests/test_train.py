"""The training entry point: tiny runs, resume, DDP on CPU, wandb offline, multirun."""

import copy
import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.commands import run_module
from ucdir.checkpoints import read_checkpoint, run_config
from ucdir.train import build, train
from ucdir.types import PairBatch


def test_tiny_training_runs(train_cfg) -> None:
    metrics = train(train_cfg())
    assert "train/loss" in metrics and "val/psnr" in metrics


def test_non_finite_loss_stops_with_a_clear_message(train_cfg) -> None:
    _, model, _ = build(train_cfg())
    batch = PairBatch(
        torch.full((2, 3, 32, 32), float("nan")), torch.rand(2, 3, 32, 32), torch.zeros(2, 0)
    )
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        model.training_step(batch, 0)


def test_frozen_predictor_needs_a_checkpoint(train_cfg) -> None:
    with pytest.raises(ValueError, match="predictor_ckpt"):
        build(train_cfg("model.freeze_predictor=true"))


@pytest.mark.slow
def test_regression_then_frozen_predictor(train_cfg, tmp_path: Path) -> None:
    cfg = train_cfg(
        "model=regression",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.val_check_interval=2",
    )
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    _, model, _ = build(train_cfg("model.freeze_predictor=true", f"predictor_ckpt={ckpt}"))
    state = read_checkpoint(ckpt)["state_dict"]
    torch.testing.assert_close(model.predictor.out.weight, state["predictor.out.weight"])
    assert not any(p.requires_grad for p in model.predictor.parameters())


@pytest.mark.slow
def test_overfitting_one_batch_lowers_the_loss(train_cfg, tmp_path: Path) -> None:
    cfg = train_cfg(
        "debug=overfit",
        "model=tiny",
        "logger=csv",
        "data.crop=32",
        "data.batch_size=4",
        "trainer.max_steps=80",
        "trainer.log_every_n_steps=1",
        "model.objective.aux_l1_weight=1.0",
        "model.optimizer.lr=1e-3",
        "trainer.val_check_interval=80",
        "trainer.limit_val_batches=1",
    )
    train(cfg)
    with open(next(tmp_path.glob("csv/*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))

    def mean_first_and_last(key: str) -> tuple[float, float]:
        values = [float(r[key]) for r in rows if r.get(key)]
        assert len(values) > 40, key
        return sum(values[:10]) / 10, sum(values[-10:]) / 10

    # train/loss = main + aux_l1: the auxiliary L1 of x_init alone could make it fall, so the
    # diffusion loss itself (train/main) must fall clearly
    first, last = mean_first_and_last("train/main")
    assert last < 0.7 * first, (first, last)
    first, last = mean_first_and_last("train/aux_l1")
    assert last < first, (first, last)
    assert float(rows[0]["lr"]) == 1e-3  # the learning-rate logger of the default callbacks


class _Capture(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.step = trainer.global_step
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())
        ema = next(c for c in trainer.callbacks if type(c).__name__ == "EMA")
        self.ema = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.slow
def test_resume_restores_optimizer_ema_and_step(train_cfg, tmp_path: Path) -> None:
    common = [
        "trainer.fast_dev_run=false",
        "trainer.limit_val_batches=1",
        "trainer.val_check_interval=4",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "callbacks.ema.update_starting_at_step=1",
        "callbacks.ema.decay=0.5",
    ]
    train(train_cfg(*common, "trainer.max_steps=4"))
    ckpt_path = tmp_path / "checkpoints" / "step0000002.ckpt"
    ckpt = read_checkpoint(ckpt_path)
    assert run_config(ckpt)["model"]["denoiser"]["width"] == 16
    cfg = train_cfg(*common, "trainer.max_steps=6", f"ckpt_path={ckpt_path}")
    datamodule, model, trainer = build(cfg)
    capture = _Capture()
    trainer.callbacks.append(capture)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    assert capture.step == 2 and trainer.global_step == 6
    saved_opt = ckpt["optimizer_states"][0]["state"]
    for key, value in saved_opt.items():
        torch.testing.assert_close(capture.optimizer["state"][key]["exp_avg"], value["exp_avg"])
    for name, value in ckpt["state_dict"].items():  # the EMA weights
        torch.testing.assert_close(capture.ema[name], value)
    for name, value in ckpt["current_model_state"].items():  # the raw weights
        torch.testing.assert_close(capture.weights[name], value)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """Also: with Hydra's own run folder (no hydra.run.dir given), everything either rank writes
    lands in that one folder (rank 1's log included), nothing in the working directory."""
    cwd, logs = tmp_path / "cwd", tmp_path / "logs"
    cwd.mkdir()
    args = ["debug=ddp_sim", "model=tiny", "data.crop=32", "data.batch_size=2", "sampler.steps=2"]
    run_module("ucdir.train", *args, f"paths.log_dir={logs}", cwd=cwd, check=True)
    assert list(cwd.iterdir()) == []
    (run,) = (logs / "train" / "runs").iterdir()
    assert list(logs.iterdir()) == [logs / "train"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".hydra").is_dir()
    assert (run / "train_ddp_process_1.log").is_file()


@pytest.mark.slow
def test_wandb_logger_offline(tmp_path: Path) -> None:
    run_module(
        "ucdir.train",
        "debug=tiny",
        "logger=wandb",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={
            "UCDIR_LOG_DIR": str(tmp_path / "logs"),
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path),
        },
        check=True,
    )
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].rglob("*.wandb"))


@pytest.mark.slow
def test_multirun_sweep(tmp_path: Path) -> None:
    run_module(
        "ucdir.train",
        "-m",
        "model.denoiser.kernels=4,8",  # a training ablation: 4 different models
        "model.denoiser.guide=initial,degraded",
        "debug=tiny",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs")},
        check=True,
    )
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
