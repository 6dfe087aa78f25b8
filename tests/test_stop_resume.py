"""Training loses nothing and mixes nothing: SIGTERM / SIGINT save `last.ckpt` at the step
boundary and exit non-zero, `last.ckpt` every 30 minutes by default, one run per run folder, and a
resume compares its config with the one stored in the checkpoint."""

from __future__ import annotations

import csv
import datetime
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
from hydra.utils import instantiate

from tests.commands import run_module, start_module
from ucdir.callbacks import TrainingStopped
from ucdir.callbacks.resume import (
    ResumeConfigError,
    RunFolderInUseError,
    check_resume_config,
    check_run_folder,
    config_changes,
)
from ucdir.checkpoints import read_checkpoint, run_config
from ucdir.train import train

QUICK = [
    "trainer.fast_dev_run=false",
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
]
# one thread per process: two torch processes on a shared 2-core machine otherwise crawl
ENV = {"OMP_NUM_THREADS": "1", "UCDIR_LOG_DIR": "unused"}


class SendSignal(L.Callback):
    """Sends `signum` to this process once `step` steps are done, at the start of the next
    training step (or, with `in_validation`, of the first validation batch) (rank 0)."""

    def __init__(self, step: int, signum: int, in_validation: bool = False) -> None:
        self.step, self.signum, self.in_validation = step, signum, in_validation

    def _send(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if not self.in_validation:
            self._send(trainer)

    def on_validation_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.in_validation and not trainer.sanity_checking:
            self._send(trainer)


class LastCheckpointSeen(L.Callback):
    """Records, at the start of each step, the step of `last.ckpt` (None: no file yet)."""

    seen: ClassVar[dict[int, int | None]] = {}  # the instance is built from the config

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"  # type: ignore[union-attr]
        step = read_checkpoint(last)["global_step"] if last.is_file() else None
        LastCheckpointSeen.seen[trainer.global_step] = step


def _command(run: Path, *overrides: str) -> list[str]:
    return [
        "ucdir.train",
        "debug=tiny",
        *QUICK,
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run}",
        *overrides,
    ]


def _logged_steps(run: Path) -> list[list[int]]:
    """The steps with a train/loss row, per CSV version of the run."""
    versions = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    steps = []
    for path in versions:
        with open(path, newline="") as f:
            steps.append([int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")])
    return steps


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A run killed with SIGTERM after 3 logged steps: (run folder, exit status, output)."""
    run = tmp_path_factory.mktemp("stopped")
    out = run.parent / f"{run.name}.out"
    with open(out, "w") as f:
        proc = start_module(
            *_command(run, "trainer.max_steps=100000"), env=ENV, stdout=f, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if len(_logged_steps(run)[0]) >= 3:
                    break
            except (IndexError, OSError, KeyError, ValueError):  # not written yet / mid-write
                pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    return run, code, out.read_text()


@pytest.mark.slow
def test_sigterm_saves_last_ckpt_and_exits_non_zero(stopped_run: tuple[Path, int, str]) -> None:
    run, code, output = stopped_run
    assert code == 128 + signal.SIGTERM, output[-3000:]
    match = re.search(r"stopped by SIGTERM at step (\d+); resume with ckpt_path=(\S+)", output)
    assert match, output[-3000:]
    step, path = int(match[1]), Path(match[2])
    assert path == run / "checkpoints" / "last.ckpt"
    assert step >= 3 and read_checkpoint(path)["global_step"] == step
    assert not list(path.parent.glob("step*.ckpt"))  # the step interval (10k) never came
    assert not list(path.parent.glob(".tmp-*"))


@pytest.mark.slow
def test_a_stopped_run_resumes_from_its_step(stopped_run: tuple[Path, int, str]) -> None:
    run, _, _ = stopped_run
    last = run / "checkpoints" / "last.ckpt"
    step = read_checkpoint(last)["global_step"]
    run_module(
        *_command(run, f"trainer.max_steps={step + 2}", f"ckpt_path={last}"),
        env=ENV,
        timeout=300,
        check=True,
    )
    assert read_checkpoint(last)["global_step"] == step + 2
    assert _logged_steps(run)[-1] == [step, step + 1]  # continued, not restarted
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no last-v1.ckpt


@pytest.mark.slow
def test_resume_under_another_model_is_refused_naming_the_stored_one(
    stopped_run: tuple[Path, int, str],
) -> None:
    run, _, _ = stopped_run
    done = run_module(
        *_command(run, "model.denoiser.width=8", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"),
        env=ENV,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "model.denoiser.width: 16 → 8" in output
    assert "model=tiny task=samples" in output and "resume_allow_changes=true" in output
    assert "size mismatch" not in output and "Missing key" not in output


@pytest.mark.slow
def test_sigint_saves_at_the_step_boundary_and_stops(train_cfg, tmp_path: Path) -> None:
    cfg = train_cfg(
        *QUICK,
        "trainer.max_steps=1000",
        f"+callbacks.interrupt={{_target_: {__name__}.SendSignal, step: 2, signum: 2}}",
    )
    before = signal.getsignal(signal.SIGINT)  # Python's default; a pytest-xdist worker ignores it
    with pytest.raises(TrainingStopped) as stopped:
        train(cfg)
    assert stopped.value.code == 128 + signal.SIGINT and stopped.value.step == 3
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is gone again


@pytest.mark.slow
def test_sigterm_during_validation_saves_the_steps_done(train_cfg, tmp_path: Path) -> None:
    """Lightning itself ends a validation on SIGTERM: the steps trained are still saved."""
    cfg = train_cfg(
        *QUICK,
        "trainer.max_steps=1000",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=2",
        "data.eval_crop=32",
        f"+callbacks.term={{_target_: {__name__}.SendSignal, step: 2, signum: 15, "
        "in_validation: true}",
    )
    with pytest.raises(TrainingStopped) as stopped:
        train(cfg)
    assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.step == 2
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2


@pytest.mark.slow
def test_last_checkpoint_every_30_minutes_by_default(train_cfg, tmp_path: Path) -> None:
    node = train_cfg().callbacks.time_checkpoint
    timed = instantiate(node)
    assert timed._train_time_interval == datetime.timedelta(minutes=30)  # Lightning's trigger
    assert timed.save_last and timed.save_top_k == 0
    assert node.dirpath == train_cfg().callbacks.model_checkpoint.dirpath

    cfg = train_cfg(
        *QUICK,
        "trainer.max_steps=3",
        "callbacks.time_checkpoint.minutes=0.0001",
        f"+callbacks.probe._target_={__name__}.LastCheckpointSeen",
    )
    LastCheckpointSeen.seen = {}
    train(cfg)
    assert LastCheckpointSeen.seen == {0: None, 1: 1, 2: 2}  # 6 ms: after every step
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    off = train_cfg("~callbacks.time_checkpoint").callbacks
    assert "time_checkpoint" not in off


def test_a_new_run_into_a_used_folder_is_refused(train_cfg, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"another run")
    with pytest.raises(RunFolderInUseError) as refused:
        train(train_cfg(*QUICK, "trainer.max_steps=2"))
    message = str(refused.value)
    folder = tmp_path / "checkpoints"
    assert "\n" not in message and str(folder) in message
    assert "hydra.run.dir=" in message and f"ckpt_path={folder / 'last.ckpt'}" in message
    assert (folder / "last.ckpt").read_bytes() == b"another run"


def test_run_folder_check(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    check_run_folder(folder, None)  # no folder yet
    folder.mkdir()
    (folder / ".tmp-last.ckpt.123").write_bytes(b"")  # a killed save's leftover: not a run
    check_run_folder(folder, None)
    (folder / "step0000005.ckpt").write_bytes(b"")
    check_run_folder(folder, folder / "step0000005.ckpt")  # resuming that run: allowed
    with pytest.raises(RunFolderInUseError, match="is not in it"):
        check_run_folder(folder, tmp_path / "elsewhere" / "last.ckpt")


def test_resume_under_another_task_is_refused(train_cfg, checkpoint: Path) -> None:
    cfg = train_cfg(*QUICK, "trainer.max_steps=3", f"ckpt_path={checkpoint}", "task.name=jpeg")
    with pytest.raises(ResumeConfigError, match=r"task\.name: 'samples' → 'jpeg'.*task\.name=sam"):
        train(cfg)


def test_resume_config_changes_are_logged_ignored_or_refused(
    checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored = run_config(read_checkpoint(checkpoint))
    current = {
        **stored,
        "model": {**stored["model"], "optimizer": {**stored["model"]["optimizer"], "lr": 1e-3}},
        "trainer": {**stored["trainer"], "max_steps": 10, "devices": 4},  # ignored
        "paths": {"output_dir": "/elsewhere"},  # ignored
        "ckpt_path": str(checkpoint),  # ignored
    }
    assert config_changes(stored, current) == {"model.optimizer.lr": (1e-4, 1e-3)}
    with caplog.at_level(logging.WARNING, logger="ucdir.callbacks.resume"):
        check_resume_config(stored, current, str(checkpoint))
    assert "model.optimizer.lr: 0.0001 → 0.001" in caplog.text

    bigger = {**current, "model": {**current["model"], "predictor": {"width": 64}}}
    with pytest.raises(ResumeConfigError) as refused:
        check_resume_config(stored, bigger, "x.ckpt", {"model": "tiny", "task": "samples"})
    assert "model.predictor.width: 32 → 64" in str(refused.value)
    assert "model=tiny task=samples (task.name=samples)" in str(refused.value)
    changes = check_resume_config(stored, bigger, "x.ckpt", allow_changes=True)
    assert "model.predictor.width" in changes and "model.predictor._target_" in changes
