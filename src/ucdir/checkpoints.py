"""Loading weights: Lightning checkpoints of ucdir runs and plain state dicts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ucdir.callbacks.config import CONFIG_KEY


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint file on the CPU, with a clear error when it is missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint {str(p)!r} does not exist")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for corrupt files
        raise ValueError(f"ckpt_path: cannot read checkpoint {str(p)!r}: {e}") from e


def load_state(
    module: nn.Module,
    path_or_state: str | Path | Mapping[str, Any],
    prefix: str = "",
    key_map: Mapping[str, str] | None = None,
    strict: bool = True,
) -> None:
    """Loads the weights under `prefix` (e.g. "predictor.") of a checkpoint into `module`.

    Args:
        module: the network to fill.
        path_or_state: a Lightning checkpoint / state-dict file, or an already loaded dict.
        prefix: key prefix to select and strip ("" = all keys).
        key_map: optional renames applied after stripping (old name -> new name).
        strict: require an exact key match.
    """
    ckpt = (
        read_checkpoint(path_or_state) if isinstance(path_or_state, str | Path) else path_or_state
    )
    state = ckpt.get("state_dict", ckpt)
    selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if key_map:
        selected = {key_map.get(k, k): v for k, v in selected.items()}
    if not selected:
        raise ValueError(f"no weights with prefix {prefix!r} in the checkpoint")
    module.load_state_dict(selected, strict=strict)


def run_config(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved run configuration stored in a ucdir checkpoint."""
    if CONFIG_KEY not in ckpt:
        raise ValueError(
            "ckpt_path: this checkpoint has no ucdir run configuration (it was not written by "
            "`python -m ucdir.train`)"
        )
    return dict(ckpt[CONFIG_KEY])


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (for sidecars)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
