"""Checkpoints: nothing in a file is run, atomic saves survive a kill, clear errors on resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from tests.commands import run_module
from tests.conftest import REPO
from ucdir.checkpoints import (
    AtomicCheckpointIO,
    UnsafeCheckpointError,
    read_checkpoint,
)


class _Payload:
    """Unpickling this creates `marker` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def _malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    path, marker = _malicious(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match="Nothing from it was executed"):
        read_checkpoint(path)
    assert not marker.exists()


def test_restore_and_train_refuse_a_malicious_checkpoint(tmp_path: Path) -> None:
    path, marker = _malicious(tmp_path)
    photo = REPO / "src" / "ucdir" / "assets" / "samples" / "val" / "chelsea.png"
    env = {"UCDIR_LOG_DIR": str(tmp_path / "logs")}
    for args in (
        ["ucdir.restore", f"ckpt_path={path}", f"input={photo}", f"output={tmp_path / 'out'}"],
        ["ucdir.train", "debug=tiny", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'run'}"],
    ):
        out = run_module(*args, env=env)
        assert out.returncode != 0 and "refused to load" in out.stderr, out.stderr[-2000:]
        assert not marker.exists()


def test_an_empty_or_truncated_checkpoint_names_the_newest_intact_one(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    for step in (10, 20):
        io.save_checkpoint({"step": step}, tmp_path / f"step{step:07d}.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty.*step0000020\.ckpt"):
        read_checkpoint(tmp_path / "last.ckpt")
    full = (tmp_path / "step0000020.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"truncated.*step0000020\.ckpt"):
        read_checkpoint(tmp_path / "last.ckpt")
    (tmp_path / "step0000020.ckpt").write_bytes(full[:10])  # the newest one broken too
    with pytest.raises(ValueError, match=r"step0000010\.ckpt"):
        read_checkpoint(tmp_path / "last.ckpt")


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)

    def interrupted(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


_SAVER = """
import sys, torch
from pathlib import Path
from ucdir.checkpoints import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), Path(sys.argv[1])
step = 0
while True:
    step += 1
    io.save_checkpoint({"step": step, "w": torch.full((4_000_000,), float(step))}, path)
"""


@pytest.mark.slow
def test_kill_9_during_saves_never_leaves_a_broken_last_ckpt(tmp_path: Path) -> None:
    """A process rewriting a 16 MB last.ckpt in a loop, killed at random moments."""
    path = tmp_path / "ckpt" / "last.ckpt"
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    for delay in (0.31, 0.57, 0.83, 1.19):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], env=env, cwd=REPO)
        deadline = time.time() + 120
        while not path.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert zipfile.is_zipfile(path)
        ckpt = read_checkpoint(path)
        assert float(ckpt["w"][0]) == ckpt["step"] >= 1
        temps = [p for p in path.parent.iterdir() if p.name != "last.ckpt"]
        assert len(temps) <= 1 and all(p.name.startswith(".tmp-last.ckpt.") for p in temps)
        assert not list((tmp_path / "tmp").iterdir())  # nothing staged in $TMPDIR


@pytest.mark.slow
def test_training_keeps_the_newest_step_checkpoints_and_last(train_cfg, tmp_path: Path) -> None:
    from ucdir.train import train

    train(
        train_cfg(
            "trainer.fast_dev_run=false",
            "trainer.max_steps=8",
            "trainer.limit_val_batches=0",
            "callbacks.model_checkpoint.every_n_train_steps=2",
            "callbacks.model_checkpoint.save_top_k=2",
        )
    )
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step0000006.ckpt", "step0000008.ckpt"]
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 8
