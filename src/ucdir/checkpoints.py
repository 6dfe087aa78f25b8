"""Checkpoints: safe reading (nothing in a file is run), atomic writing, plain state dicts.

A checkpoint is read with `torch.load(..., weights_only=True)`: tensors, numbers, strings and
containers only, so a crafted pickle cannot run code; configs stored inside become objects only
through the allow-list of `ucdir.from_file`. `AtomicCheckpointIO` (Lightning's
`CheckpointIO` plugin) writes each checkpoint to a temporary file in its own folder, flushes it
to disk and renames it over the old one, so a kill never leaves a truncated `last.ckpt`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

CONFIG_KEY = "ucdir_config"
"""Where a ucdir checkpoint keeps its resolved run configuration (`StoreConfig` writes it)."""
CHOICES_KEY = "ucdir_choices"
"""The Hydra config-group options of the run (`{"model": "tiny", "task": "samples", ...}`), when
it was started from the command line."""

TEMP_PREFIX = ".tmp-"
"""Checkpoint temporary files: `<folder>/.tmp-<name>.<pid>` until renamed."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds objects outside the allow-list of a weights-only load: refused."""


def _newest_intact(folder: Path, but: Path) -> Path | None:
    """The most recent `step*.ckpt` of `folder` (other than `but`) that is a complete zip."""
    candidates = sorted(
        (p for p in folder.glob("step*.ckpt") if p != but),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.stem)] or [0],
        reverse=True,
    )
    return next((p for p in candidates if p.stat().st_size and zipfile.is_zipfile(p)), None)


def check_checkpoint_file(path: str | Path) -> Path:
    """The checkpoint's path after the cheap checks (exists, non-empty, a complete zip), without
    reading it.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is empty or truncated (naming the newest intact `step*.ckpt` beside it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint {str(p)!r} does not exist")
    if p.stat().st_size == 0 or not zipfile.is_zipfile(p):
        intact = _newest_intact(p.parent, p)
        hint = (
            f"; the newest intact checkpoint beside it is {str(intact)!r} (ckpt_path={intact})"
            if intact
            else ""
        )
        kind = "empty" if p.stat().st_size == 0 else "truncated or not a torch checkpoint"
        raise ValueError(f"ckpt_path: checkpoint {str(p)!r} is {kind}{hint}")
    return p


def unsafe_checkpoint(path: str | Path, err: pickle.UnpicklingError) -> UnsafeCheckpointError:
    """The error for a checkpoint a weights-only load refused."""
    return UnsafeCheckpointError(
        f"ckpt_path: refused to load {str(path)!r}: it holds objects other than tensors and "
        f"plain data, which a weights-only load does not run ({str(err).splitlines()[-1][:300]})."
        " Nothing from it was executed; load only checkpoints written by ucdir."
    )


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Reads a checkpoint file on the CPU, weights only, with a clear error when it is missing,
    empty, truncated or holds anything but tensors and plain data. `mmap=True` maps the tensors
    instead of reading them (for a look at the plain data of a large checkpoint).

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: it holds other objects (a pickle that would run code): nothing of
            it was run.
        ValueError: it is empty or truncated (naming the newest intact `step*.ckpt` beside it).
    """
    p = check_checkpoint_file(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise unsafe_checkpoint(p, e) from e
    except Exception as e:  # torch raises several types for corrupt files
        raise ValueError(f"ckpt_path: cannot read checkpoint {str(p)!r}: {e}") from e


def count_nonfinite(tensor: Tensor) -> int:
    """How many values of a floating-point tensor are NaN or infinite (0 for other dtypes)."""
    return int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0


def check_finite(module: nn.Module, path: str | Path, prefix: str = "") -> None:
    """Raises if any weight of `module` (loaded from `path`) is NaN or infinite, naming it."""
    for name, tensor in module.state_dict().items():
        if bad := count_nonfinite(tensor):
            raise ValueError(
                f"{path}: weight {prefix}{name!s} has {bad} non-finite value(s) (NaN or inf): "
                "the checkpoint is corrupt; nothing was restored"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, written atomically in the checkpoint's own folder.

    The checkpoint goes to `<folder>/.tmp-<name>.<pid>`, is flushed and fsynced, then renamed
    over `<folder>/<name>`: a kill at any moment leaves the previous file whole (and at most one
    temporary file beside it, removed by the next save), never a truncated one and nothing in
    `$TMPDIR` (Lightning's default stages the file there and copies it across filesystems).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f"{TEMP_PREFIX}{target.name}.*"):
            stale.unlink(missing_ok=True)  # left by a killed save
        tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        try:  # make the rename itself durable
            fd = os.open(target.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
