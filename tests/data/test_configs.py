import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from tests.conftest import CONFIGS
from tests.data.conftest import compose_task
from ucdir.data.base import PairDataModule

TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))


LOADER = {k for k in OmegaConf.load(CONFIGS / "data" / "loader.yaml") if not k.startswith("_")}


def test_all_six_tasks_exist() -> None:
    assert TASKS == ["blind", "gopro", "jpeg", "paired", "samples", "sid"]


def test_the_loader_settings_are_the_shells_keyword_arguments() -> None:
    shell = inspect.signature(PairDataModule.__init__).parameters.values()
    keyword = {p.name for p in shell if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword - {"scalar_names", "eval_fixed_size"} == LOADER


@pytest.mark.parametrize("task", TASKS)
def test_task_config_composes_and_instantiates(task: str, tmp_path: Path) -> None:
    where = ["data.lq=a", "data.gt=b"] if task == "paired" else [f"data.root={tmp_path}"]
    cfg = compose_task(task, *where)
    assert cfg.task.name == task and cfg.task.channels == 3 and cfg.task.lq_channels == 3
    assert cfg.data._target_.startswith("ucdir.data.")
    keys = {k for k in cfg.data if not k.startswith("_")}
    signature = inspect.signature(get_class(cfg.data._target_)).parameters
    own = {name for name, p in signature.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert keys >= LOADER, "every task takes the loader settings from configs/data/loader.yaml"
    assert keys - LOADER == own, f"YAML keys must equal the constructor arguments: {keys ^ own}"
    dm = instantiate(cfg.data)
    assert isinstance(dm, PairDataModule) and dm.task == task
    assert list(dm.aux_scalars) == list(cfg.task.aux_scalars)


def test_packed_sid_input_switches_lq_channels() -> None:
    cfg = compose_task("sid", "task.input=packed")
    assert cfg.task.lq_channels == 4 and cfg.data.input == "packed"
