"""The `precision=` option of the inference commands (restore, evaluate, the app, validation):
``auto`` | ``fp32`` | ``bf16``.

``bf16`` runs the networks under ``torch.autocast(..., dtype=torch.bfloat16)`` with weights and
activations channels-last: convolutions and matmuls in bf16, the norms, the sampler's arithmetic
and the outputs in fp32. ``auto`` chooses it where bf16 is fast — a CPU with AMX (Sapphire
Rapids and later: ``amx_bf16`` in ``/proc/cpuinfo``, ~5× the fp32 convolution rate) or a CUDA
device with native bf16 — and fp32 elsewhere (an AVX2/AVX-512 CPU without AMX emulates bf16
convolutions and gains nothing).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_has_amx(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU has AMX bf16 tiles (the ``amx_bf16`` flag of Linux's cpuinfo); False where
    the file cannot be read (other systems)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return "amx_bf16" in line.split(":", 1)[-1].split()
    return False


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name and vector extensions as the figures name it, e.g. "Intel(R) Xeon(R)
    Processor, AVX512, AMX" (the machine type where /proc/cpuinfo cannot be read)."""
    name = platform.processor() or platform.machine()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[-1].strip()
                break
    except OSError:
        pass
    extras = [torch.backends.cpu.get_cpu_capability()]
    if cpu_has_amx(cpuinfo):
        extras.append("AMX")
    return ", ".join([name, *extras])


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds `device` up: a CPU with AMX, a CUDA device with bf16."""
    if device.type == "cpu":
        return cpu_has_amx()
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def resolve_precision(name: str, device: torch.device) -> Precision:
    """The precision of a `precision=` value on `device`.

    Raises:
        ValueError: `name` is not one of `PRECISIONS`, or bf16 on a device without autocast.
    """
    name = str(name)
    if name not in PRECISIONS:
        raise ValueError(f"precision={name!r}: choose auto, fp32 or bf16")
    if name == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision=bf16 runs on cpu or cuda, not {device.type!r}: use fp32")
    return name  # type: ignore[return-value]


@contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """bf16 autocast on `device` for ``bf16``; nothing for ``fp32``. Keep one context around a
    whole restoration: autocast caches each weight's bf16 copy for the context's lifetime."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def memory_format(precision: Precision, device: torch.device) -> torch.memory_format:
    """The faster weight layout, as measured: channels-last for bf16 (oneDNN's and cuDNN's fast
    layout there) and for fp32 on an AVX-512 CPU (the default network's forward at 256²: 2.31 s
    vs 3.06 s contiguous on an AMX Xeon, 2 threads); contiguous for fp32 elsewhere."""
    if precision == "bf16":
        return torch.channels_last
    if device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return torch.channels_last
    return torch.contiguous_format


def prepare_networks(precision: Precision, device: torch.device, *networks: nn.Module) -> None:
    """Puts the weights of `networks` in the layout of `precision` on `device`, in place (the
    dtype stays fp32: autocast makes the bf16 copies)."""
    for network in networks:
        network.to(memory_format=memory_format(precision, device))


def trainer_precision(value: object, accelerator: object = "auto") -> object:
    """Lightning's ``precision`` for ``trainer.precision=auto``: ``bf16-mixed`` where bf16 is fast
    on the accelerator (an AMX CPU, a bf16 GPU), ``32-true`` elsewhere; any other value as given.
    """
    if str(value) != "auto":
        return value
    acc = str(accelerator or "auto")
    on_cuda = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_cuda and torch.cuda.is_available() else "cpu")
    return "bf16-mixed" if bf16_is_fast(device) else "32-true"
