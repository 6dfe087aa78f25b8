"""What a run may find when it starts: one run per checkpoint folder, and a resume whose config
matches the one stored in its checkpoint (`StoreConfig`).

- A new run (no `ckpt_path=`) into a checkpoint folder that already holds checkpoints is refused:
  its `last.ckpt` and step checkpoints would mix with the other run's.
- A resume compares the stored config with the current one, key by key (dotted paths): the keys
  of `RESUME_IGNORED` may change freely and are not reported, every other change is logged
  (old → new), and a change to a key of `ARCHITECTURE_KEYS` is refused unless
  `resume_allow_changes=true`.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

RESUME_IGNORED: tuple[str, ...] = (
    # how the run is started, where it writes and logs
    "ckpt_path",
    "resume_allow_changes",
    "hydra",
    "paths",
    "logger",
    "trainer.default_root_dir",
    "callbacks.*.dirpath",
    # where the inputs live (the same data may move)
    "data.root",
    "data.val_root",
    "data.val_list",
    "data.cache_dir",
    "pretrained",
    "predictor_ckpt",
    # how long it trains
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time",
    # the hardware it runs on
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "data.num_workers",
    "data.pin_memory",
    # what it shows
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "run_name",
    "tags",
)
"""Keys (dotted paths; a key covers everything under it, `*` matches any part) that may differ
between a checkpoint's config and the run resuming from it, unreported."""

ARCHITECTURE_KEYS: tuple[str, ...] = (
    "task.name",
    "model._target_",
    "model.objective._target_",
    "model.predictor",
    "model.denoiser",
)
"""Keys whose change makes a resume a different model or task: refused unless
`resume_allow_changes=true`."""


class RunFolderInUseError(ValueError):
    """A new run would write its checkpoints beside those of another run."""


class ResumeConfigError(ValueError):
    """A resume changes the architecture or the task of its checkpoint."""


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(f"{p}.") or fnmatch.fnmatchcase(key, p) for p in patterns)


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists are values (compared whole)."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


_ABSENT = "<absent>"


def config_changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple]:
    """The keys that differ between two resolved configs, outside `RESUME_IGNORED`:
    dotted path -> (stored value, current value), `"<absent>"` for a key only one of them has."""
    old, new = flatten(stored), flatten(current)
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(old.keys() | new.keys())
        if not _matches(key, RESUME_IGNORED) and old.get(key, _ABSENT) != new.get(key, _ABSENT)
    }


def _show(value: Any) -> str:
    text = value if value == _ABSENT else repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _describe(changes: Mapping[str, tuple]) -> str:
    return "; ".join(f"{key}: {_show(a)} → {_show(b)}" for key, (a, b) in changes.items())


@rank_zero_only
def _log_changes(ckpt_path: str, changes: Mapping[str, tuple]) -> None:
    lines = "\n".join(f"  {key}: {_show(a)} → {_show(b)}" for key, (a, b) in changes.items())
    log.warning("resuming from %s with %d config change(s):\n%s", ckpt_path, len(changes), lines)


def check_resume_config(
    stored: Mapping[str, Any],
    current: Mapping[str, Any],
    ckpt_path: str,
    stored_choices: Mapping[str, str] | None = None,
    allow_changes: bool = False,
) -> dict[str, tuple]:
    """Compares the config stored in a checkpoint with the run resuming from it; logs the
    changes (rank 0) and returns them.

    Args:
        stored: the checkpoint's resolved config (`checkpoints.run_config`).
        current: the resuming run's resolved config.
        ckpt_path: the checkpoint, for the messages.
        stored_choices: the checkpoint's config-group options (`model=tiny`), when stored.
        allow_changes: `resume_allow_changes=true`: architecture changes are logged, not refused.

    Raises:
        ResumeConfigError: a key of `ARCHITECTURE_KEYS` differs and `allow_changes` is false.
    """
    changes = config_changes(stored, current)
    refused = {k: v for k, v in changes.items() if _matches(k, ARCHITECTURE_KEYS)}
    if refused and not allow_changes:
        groups = [f"{k}={v}" for k, v in (stored_choices or {}).items() if k in ("model", "task")]
        task = (stored.get("task") or {}).get("name", _ABSENT)
        trained = " ".join([*groups, f"(task.name={task})" if groups else f"task.name={task}"])
        raise ResumeConfigError(
            f"ckpt_path={ckpt_path}: this run changes the model or task the checkpoint was "
            f"trained with: {_describe(refused)}. The checkpoint was trained with {trained}: "
            "resume with the same model and task, or add resume_allow_changes=true to resume "
            "anyway"
        )
    if changes:
        _log_changes(ckpt_path, changes)
    return changes


def check_run_folder(folder: Path, resume_from: str | Path | None) -> None:
    """Refuses a run that would write into a checkpoint folder holding another run's checkpoints
    (a run resuming from a checkpoint inside that folder is the same run: allowed).

    Raises:
        RunFolderInUseError: the folder holds `*.ckpt` files and `resume_from` is not one of them.
    """
    held = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    if not held:
        return
    if resume_from is not None and Path(resume_from).resolve().parent == folder.resolve():
        return
    last = folder / ("last.ckpt" if "last.ckpt" in held else held[-1])
    given = f" (ckpt_path={resume_from} is not in it)" if resume_from is not None else ""
    raise RunFolderInUseError(
        f"{folder} already holds the checkpoints of another run ({', '.join(held[:4])}"
        f"{', ...' if len(held) > 4 else ''}){given}: start this run in a new folder "
        f"(hydra.run.dir=<new folder>) or resume that run (ckpt_path={last})"
    )
