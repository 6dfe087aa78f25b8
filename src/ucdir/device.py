"""The `device=` option of the commands: ``auto`` (CUDA when available, else the CPU) or any
torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """The torch device of a `device=` value.

    Raises:
        ValueError: `name` is neither ``auto`` nor a device name torch knows.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device={name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from err
