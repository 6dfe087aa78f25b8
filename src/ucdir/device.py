"""The `device=` option of the commands: ``auto`` (CUDA when available, else the CPU) or any
torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

from __future__ import annotations

import os
import shutil

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


def compile_unavailable(device: torch.device) -> str | None:
    """Why `torch.compile` cannot run on `device` here (None when it can): dynamo unsupported on
    this Python, no C++ compiler for inductor's CPU kernels, no Triton for its CUDA kernels."""
    try:
        torch._dynamo.eval_frame.check_if_dynamo_supported()
    except RuntimeError as err:
        return f"torch.compile is not supported here ({err})"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile needs Triton for CUDA, not installed"
    compilers = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
    if not any(c and shutil.which(c) for c in compilers):
        return "torch.compile on the CPU needs a C++ compiler (g++, clang++ or $CXX), none found"
    return None
