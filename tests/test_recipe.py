"""The CPU recipe of the shipped JPEG models: its knobs (learning-rate schedule, prediction type,
decoded-image cache) and its two experiments, trained for a few steps."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import compose
from tests.data.conftest import write_images
from ucdir.checkpoints import read_checkpoint
from ucdir.lit_module import warmup_cosine


def test_warmup_cosine_warms_up_linearly_then_decays_to_its_floor() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=110, warmup_steps=10, final=0.1)
    lrs = []
    for _ in range(120):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[110] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        warmup_cosine(opt, total_steps=10, warmup_steps=10)


@pytest.mark.parametrize("experiment", ["jpeg_cpu", "jpeg_cpu_regression"])
def test_the_cpu_experiments_train_and_checkpoint_their_lr_schedule(
    experiment: str, tmp_path: Path
) -> None:
    from ucdir.train import train

    root = tmp_path / "photos"
    write_images(root, [(96, 80), (80, 72), (120, 64), (70, 90), (64, 64)])
    out = tmp_path / "run"
    overrides = [
        f"experiment={experiment}",
        f"data.root={root}",
        "data.val_count=1",
        "data.crop=32",
        "data.batch_size=2",
        "data.num_workers=0",
        f"paths.output_dir={out}",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=0",
        "model.lr_schedule.warmup_steps=2",
        "model.denoiser.width=8",
        "model.predictor.width=4",
    ]
    cfg = compose("train", overrides)
    assert cfg.data.cache is True and cfg.data.eval_crop is None
    kind = "epsilon" if experiment.endswith("regression") else "sample"
    assert cfg.model.denoiser.prediction_type == kind
    train(cfg)
    ckpt = read_checkpoint(out / "checkpoints" / "last.ckpt")
    (state,) = ckpt["lr_schedulers"]
    assert state["last_epoch"] == 4 and state["_last_lr"][0] < cfg.model.optimizer.lr
