"""Stops training on SIGTERM or SIGINT at the next step boundary, with `last.ckpt` saved first.

SIGTERM is Lightning's own: its handler (registered by the Trainer for every fit, next to
SLURM's SIGUSR1 requeue handler, which stays untouched) sets `trainer.received_sigterm`, and
Lightning would end the fit at the end of the step with a `SIGTERMException`, saving nothing.
SIGINT (Ctrl+C) would raise `KeyboardInterrupt` in the middle of a step. `StopOnSignal` reads
Lightning's flag, adds the same flag for the first SIGINT (a second Ctrl+C aborts at once, as
before), and at the end of the optimizer step in which either arrived, once every other callback
(EMA, the ModelCheckpoints) has run, saves `last.ckpt` through `trainer.save_checkpoint` into
the ModelCheckpoint's folder (the same point and path as a step checkpoint: it resumes
exactly) and raises `TrainingStopped`, whose exit status is 128 + the signal number.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

log = logging.getLogger(__name__)


class TrainingStopped(SIGTERMException):
    """Training stopped by a signal after saving `checkpoint` (Lightning's `SIGTERMException`,
    a `SystemExit`: uncaught, the process ends with status `code` = 128 + the signal number).

    Args:
        signum: the signal that stopped training (SIGTERM or SIGINT).
        step: the optimizer steps done (the checkpoint's `global_step`).
        checkpoint: the `last.ckpt` to resume from, or None when none was written (nothing
            trained since the start, or `fast_dev_run`).
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.checkpoint is None:
            return f"stopped by {name} at step {self.step}; no checkpoint written (none needed)"
        return f"stopped by {name} at step {self.step}; resume with ckpt_path={self.checkpoint}"


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """`last.ckpt` in the folder of the run's first ModelCheckpoint (else
    `<default_root_dir>/checkpoints`, Lightning's default folder)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
            return Path(callback.dirpath) / name
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class StopOnSignal(Callback):
    """Saves `last.ckpt` and stops all processes together at the step boundary after a SIGTERM
    or SIGINT (see the module docstring). Put it after every other callback: `build()` appends
    it to `trainer.callbacks` once the Trainer exists (after Lightning's reordering, which moves
    ModelCheckpoints to the end), so that the EMA update and any step checkpoint of that step
    are in the saved state."""

    def __init__(self) -> None:
        self._sigint = False
        self._previous_sigint: Any = None
        self._installed = False
        self._start_step = 0  # global_step when this fit started (resumed)
        self._checked_step = 0  # global_step at the last step boundary
        self._saved_step: int | None = None
        self.stopped: TrainingStopped | None = None
        """Set when a signal stopped training: the exception that ends the process."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sigint, self._saved_step, self.stopped = False, None, None
        self._start_step = self._checked_step = trainer.global_step
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._sigint:  # the second Ctrl+C: abort now (Lightning's KeyboardInterrupt path)
            self._restore()
            signal.default_int_handler(signum, frame)
        self._sigint = True
        log.warning("SIGINT: saving last.ckpt at the end of this step (Ctrl+C again: abort now)")

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._installed = False

    def _received(self, trainer: L.Trainer) -> int | None:
        if trainer.received_sigterm:
            return int(signal.SIGTERM)
        return int(signal.SIGINT) if self._sigint else None

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step == self._checked_step:
            return  # inside a gradient accumulation: not an optimizer step boundary
        self._checked_step = trainer.global_step
        received = self._received(trainer)
        # every process decides together (any of them signalled), once per optimizer step
        if trainer.strategy.reduce_boolean_decision(received is not None, all=False):
            raise self._stop(trainer, received or signal.SIGTERM)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        if not isinstance(exception, SIGTERMException) or isinstance(exception, TrainingStopped):
            return
        # Lightning's own SIGTERM stop outside a training step (mid-validation, sanity check):
        # save whatever was trained since the start
        path = None
        if trainer.global_step > self._start_step:
            path = self._save(trainer)
        self.stopped = TrainingStopped(signal.SIGTERM, trainer.global_step, path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def _save(self, trainer: L.Trainer) -> Path | None:
        if getattr(trainer, "fast_dev_run", False):  # set by Lightning's debugging connector
            return None
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)  # the full state: resumable
        self._saved_step = trainer.global_step
        return path

    def _stop(self, trainer: L.Trainer, signum: int) -> TrainingStopped:
        self._restore()
        path = self._save(trainer)
        if path is None:
            rank_zero_warn("fast_dev_run: no checkpoint saved on the signal")
        self.stopped = TrainingStopped(signum, trainer.global_step, path)
        return self.stopped
