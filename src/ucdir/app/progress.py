"""Progress of one restoration for the page: sampler steps and tiles as a fraction done, and the
cancel flag checked at every tile."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ucdir.diffusion.patching import PatchSplit

Report = Callable[[float, str], None]
"""Progress callback: (fraction done in [0, 1], what is running)."""


class CancelRequestedError(RuntimeError):
    """The user pressed cancel while a restoration ran."""


class Progress:
    """Turns denoiser calls and sampler steps into a fraction done; checks for cancellation.

    Args:
        report: receives (fraction, description).
        total_steps: sampler steps over all samples.
        tiles: denoiser calls per step when known (patch splitting), else learnt after a step.
        label: what is restored (the file name).
        cancel: set from another thread to stop at the next tile.
    """

    def __init__(
        self,
        report: Report | None,
        total_steps: int,
        tiles: int | None,
        label: str,
        cancel: threading.Event | None = None,
    ) -> None:
        self.report, self.total, self.tiles, self.label = report, total_steps, tiles, label
        self.cancel = cancel
        self.done = 0
        self.calls = 0

    def _check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise CancelRequestedError(f"{self.label}: cancelled")

    def _send(self) -> None:
        if self.report is None:
            return
        part = min(self.calls / self.tiles, 1.0) if self.tiles else 0.0
        tile = f", tile {self.calls}/{self.tiles}" if self.calls and (self.tiles or 0) > 1 else ""
        step = min(self.done + 1, self.total)
        self.report(
            (self.done + part) / self.total, f"{self.label}: step {step}/{self.total}{tile}"
        )

    def on_call(self) -> None:
        """After each (tile) call of the denoiser."""
        self._check()
        self.calls += 1
        self._send()

    def on_step(self, step: int, x: Tensor) -> None:
        """After each sampler step (the `restore` callback)."""
        self._check()
        if self.tiles is None:
            self.tiles = max(self.calls, 1)
        self.done, self.calls = self.done + 1, 0
        self._send()


class CountingDenoiser(nn.Module):
    """The denoiser, reporting every call on real data (patch=auto's meta-device probes are
    not sampling work)."""

    def __init__(self, denoiser: nn.Module, on_call: Callable[[], None]) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.on_call = on_call

    def forward(self, x_t: Tensor, gamma: Tensor, cond: Any) -> Tensor:
        eps = self.denoiser(x_t, gamma, cond)
        if x_t.device.type != "meta":
            self.on_call()
        return eps


def tiles_per_step(patch: Any, height: int, width: int) -> int | None:
    """Denoiser calls per sampler step on a height × width image (None: known after a step)."""
    if patch is None:
        return 1
    if isinstance(patch, PatchSplit):
        boxes = len(patch.boxes(height, width))
        return 1 if boxes == 1 else -(-boxes // patch.batch_tiles)
    return None  # patch=auto: its tile is chosen inside `restore`
