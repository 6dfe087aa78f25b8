import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate

from tests.conftest import CONFIGS
from tests.data.conftest import compose_task
from ucdir.data.base import PairDataModule

TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))


def test_all_five_tasks_exist() -> None:
    assert TASKS == ["blind", "gopro", "jpeg", "samples", "sid"]


@pytest.mark.parametrize("task", TASKS)
def test_task_config_composes_and_instantiates(task: str, tmp_path: Path) -> None:
    cfg = compose_task(task, f"data.root={tmp_path}")
    assert cfg.task.name == task and cfg.task.channels == 3 and cfg.task.lq_channels == 3
    assert cfg.data._target_.startswith("ucdir.data.")
    keys = {k for k in cfg.data if not k.startswith("_")}
    params = set(inspect.signature(get_class(cfg.data._target_)).parameters)
    assert keys == params, f"YAML keys must equal the constructor arguments: {keys ^ params}"
    dm = instantiate(cfg.data)
    assert isinstance(dm, PairDataModule) and dm.task == task
    assert list(dm.aux_scalars) == list(cfg.task.aux_scalars)


def test_packed_sid_input_switches_lq_channels() -> None:
    cfg = compose_task("sid", "task.input=packed")
    assert cfg.task.lq_channels == 4 and cfg.data.input == "packed"
