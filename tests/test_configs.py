"""Every option of every config group composes and instantiates."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.conftest import CONFIGS, compose
from ucdir.precision import trainer_precision

GROUPS = [
    "model",
    "schedule",
    "sampler",
    "patch",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "task",
    "experiment",
    "paths",
]


def options(group: str) -> list[str]:
    folder = CONFIGS / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    overrides = [
        f"{group}={option}",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}",
        f"paths.data_dir={tmp_path}",
    ]
    if group != "model":
        overrides.append("model=tiny")
    if group == "task" and option == "paired":  # the two folders have no default
        overrides += ["data.lq=inputs", "data.gt=targets"]
    if option == "objective/distill":  # distillation needs a teacher
        overrides.append("pretrained=jpeg-cpu")
    if group == "trainer":  # GPU trainer options are instantiated on the CPU here
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    cfg = compose("train", overrides)
    node = {
        "debug": None,
        "experiment": "model",
        "paths": None,
        "task": "data",
        "logger": "logger",
        "callbacks": "callbacks",
    }.get(group, group)
    if group == "schedule":
        instantiate(cfg.schedule)
        instantiate(cfg.train_schedule)
    if node is None:
        instantiate(cfg.trainer)
        return
    value = cfg.get(node)
    if value is None:  # e.g. patch=none, logger=none
        return
    if group in ("logger", "callbacks"):
        objects = [instantiate(v) for v in value.values()]
        assert all(o is not None for o in objects)
    elif group == "trainer":  # precision=auto is resolved by the train command (ucdir.precision)
        chosen = trainer_precision(value.get("precision"), value.get("accelerator"))
        assert instantiate(value, precision=chosen) is not None
    else:
        assert instantiate(value) is not None


def test_train_defaults_are_the_paper_settings() -> None:
    cfg = compose("train", ["task=jpeg", "paths.output_dir=."])
    assert cfg.data.batch_size == 32 and cfg.data.crop == 256
    assert cfg.trainer.max_steps == 500_000
    assert cfg.model.optimizer.lr == 1e-4 and cfg.model.optimizer.weight_decay == 0.01
    assert cfg.callbacks.ema.decay == 0.9999 and cfg.callbacks.ema.update_starting_at_step == 5000
    assert cfg.train_schedule.num_steps == 2000 and cfg.train_schedule.beta_end == 0.01


@pytest.mark.parametrize("name", ["restore", "stats"])
def test_other_entry_configs_compose(name: str) -> None:
    cfg = compose(name, ["+ckpt_path=x", "+input=x", "+output=x"] if name == "restore" else [])
    assert cfg
