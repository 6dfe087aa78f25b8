"""Exact resume: a run stopped at a checkpoint (cleanly, at an epoch boundary, mid-epoch, or by
`kill -9` at a random step) and resumed from `last.ckpt` logs the same per-step losses and ends
with the same weights and EMA as the uninterrupted run, with 0 or 2 loader workers."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.commands import run_module, start_module

pytestmark = pytest.mark.slow

STEPS = 8  # the embedded samples with data.repeats=1 and batch 2: 3 steps per epoch


def _train(run: Path, steps: int, workers: int, resume: bool = False) -> list[str]:
    args = [
        "ucdir.train",
        "debug=tiny",
        "trainer.fast_dev_run=false",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.ema.update_starting_at_step=1",
        "callbacks.ema.decay=0.5",
        "data.repeats=1",
        f"data.num_workers={workers}",
        f"trainer.max_steps={steps}",
        f"hydra.run.dir={run}",
    ]
    if resume:
        args.append(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    return args


def _run(args: list[str]) -> None:
    run_module(*args, check=True)


def _losses(run: Path) -> dict[int, float]:
    """step -> train/loss over every CSV version of the run (a later version wins)."""
    losses: dict[int, float] = {}
    for path in sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses[int(row["step"])] = float(row["train/loss"])
    return losses


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final checkpoint: weights (EMA swapped in), the EMA callback's raw
    weights, the optimizer moments."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == STEPS
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, torch.Tensor):
            flat[prefix] = node
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}/{key}", value)
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                walk(f"{prefix}/{i}", value)

    # state_dict holds the EMA weights, current_model_state the raw ones (Lightning's averaging)
    for key in ("state_dict", "current_model_state", "averaging_state", "optimizer_states"):
        walk(key, ckpt[key])
    return flat


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    _run(_train(run, STEPS, workers=0))
    return run


def _assert_same_run(resumed: Path, reference: Path) -> None:
    want, got = _losses(reference), _losses(resumed)
    assert sorted(got) == sorted(want) == list(range(STEPS))
    worst = max(abs(got[s] - want[s]) for s in want)
    assert worst <= 1e-6, (worst, got, want)
    a, b = _final_state(reference), _final_state(resumed)
    assert a.keys() == b.keys()
    assert int(a["averaging_state/n_averaged"]) == STEPS - 1  # EMA updated after steps 1..7
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_at_an_epoch_boundary_and_mid_epoch_is_exact(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    _run(_train(run, 3, workers=0))  # stops after the last batch of epoch 0
    _run(_train(run, 5, workers=2, resume=True))  # resumes at epoch 1, stops in its middle
    _run(_train(run, STEPS, workers=2, resume=True))  # resumes mid-epoch with workers
    _assert_same_run(run, uninterrupted)


def test_resume_after_kill_9_at_a_random_step_is_exact(uninterrupted: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    kill_after = random.Random().randint(1, STEPS - 2)
    proc = start_module(
        *_train(run, STEPS, workers=2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its loader workers die with it
    )
    target = run / "checkpoints" / f"step{kill_after:07d}.ckpt"
    last = run / "checkpoints" / "last.ckpt"  # written after the step file: wait for both
    deadline = time.monotonic() + 240
    while (
        not (target.exists() and last.exists())
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_after}"
    _run(_train(run, STEPS, workers=2, resume=True))
    _assert_same_run(run, uninterrupted)
