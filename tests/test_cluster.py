"""Clusters through Lightning and Hydra: the SLURM launcher config, Lightning's SLURM environment
under `trainer=ddp`, the sbatch example, and DDP ranks writing into one run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from tests.conftest import REPO, compose


def test_the_slurm_launcher_config_gives_one_task_per_gpu() -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = hydra_compose(
            "train",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4"],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == (2, 4, 4)
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher  # noqa: F401


def test_ddp_trainer_is_bf16_and_takes_its_ranks_from_slurm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # rank 5 of 2 nodes x 4 tasks, as srun starts it
    for key, value in {
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NAME": "ucdir-gopro",
        "SLURM_JOB_ID": "1234",
        "SLURM_NODELIST": "node[1-2]",
    }.items():
        monkeypatch.setenv(key, value)
    cfg = compose(
        "train",
        ["trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4", f"paths.output_dir={tmp_path}"],
    )
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.strategy == "ddp"
    assert cfg.trainer.benchmark and not cfg.trainer.use_distributed_sampler
    trainer_cfg = OmegaConf.merge(cfg.trainer, {"accelerator": "cpu", "precision": "32-true"})
    trainer = instantiate(trainer_cfg)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank) == (8, 5, 1)


def test_the_sbatch_example_composes() -> None:
    script = (REPO / "docs" / "slurm" / "train.sbatch").read_text()
    command = script[script.index("srun python -m ucdir.train") :].replace("\\\n", " ").split()
    overrides = [a for a in command[4:] if "=" in a and "$" not in a]
    cfg = compose("train", [*overrides, "data.root=/data/GOPRO_Large"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.task.name) == (8, 2, "gopro")


def test_a_bare_cpu_run_says_what_it_will_do_and_where_the_cpu_recipes_are(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from ucdir.train import announce, build

    cfg = compose("train", ["trainer=cpu", f"paths.output_dir={tmp_path}"])
    _, model, trainer = build(cfg)
    with caplog.at_level("INFO"):
        announce(cfg, model, trainer)
    text = caplog.text
    assert "105.1 M parameters" in text and "500000 steps" in text and "1 x cpu" in text
    assert "make demo" in text and "experiment=jpeg_cpu" in text
    caplog.clear()
    small = compose("train", ["debug=tiny", f"paths.output_dir={tmp_path}"])
    _, model, trainer = build(small)
    with caplog.at_level("INFO"):
        announce(small, model, trainer)
    assert "make demo" not in caplog.text
