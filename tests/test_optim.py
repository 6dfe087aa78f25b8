"""Optimisation knobs: the learning-rate schedule group, EMA decay warm-up, gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch.optim.swa_utils import AveragedModel

from tests.conftest import compose
from ucdir.callbacks.ema import EMA, warmup_ema
from ucdir.lit_module import warmup_linear


def _lrs(schedule: str, steps: int, *overrides: str) -> list[float]:
    cfg = compose(
        "train",
        ["model=tiny", f"model/lr_schedule={schedule}", "trainer.max_steps=100", *overrides],
    )
    model = instantiate(cfg.model)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert scheduler["interval"] == "step"
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler["scheduler"].step()
    return lrs


def test_constant_schedule_is_the_papers() -> None:
    assert _lrs("constant", 5) == [1e-4] * 5


def test_warmup_schedule_ramps_linearly_then_stays() -> None:
    lrs = _lrs("warmup", 6, "model.lr_schedule.warmup_steps=4")
    assert lrs == pytest.approx([0.25e-4, 0.5e-4, 0.75e-4, 1e-4, 1e-4, 1e-4])


def test_cosine_schedule_warms_up_then_decays_to_final_at_max_steps() -> None:
    lrs = _lrs("cosine", 101, "model.lr_schedule.warmup_steps=10", "model.lr_schedule.final=0.1")
    assert lrs[0] == pytest.approx(1e-5) and lrs[9] == pytest.approx(1e-4)
    assert lrs[55] == pytest.approx(1e-4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[100] == pytest.approx(1e-5)


def test_warmup_linear_rejects_negative_steps() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_linear(optimizer, -1)


def test_ema_decay_warms_up() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    callback = EMA(decay=0.99, update_starting_at_step=0, warmup=True)
    average = AveragedModel(net, **callback._kwargs)
    values = [1.0, 2.0, 4.0, 8.0]
    want = None
    for n, value in enumerate(values):
        net.weight.data.fill_(value)
        average.update_parameters(net)
        rate = min(0.99, (1 + n) / (10 + n))  # the n-th update after the first copy
        want = value if want is None else rate * want + (1 - rate) * value
    assert float(average.module.weight) == pytest.approx(want, rel=1e-6)
    # late in a run the decay is the configured one
    late = warmup_ema(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(10**6), decay=0.99)
    assert float(late) == pytest.approx(0.99)
    with pytest.raises(ValueError, match=r"callbacks\.ema\.decay"):
        EMA(decay=1.5)


def test_gradient_clipping_is_lightnings_own_knob(train_cfg) -> None:
    from ucdir.train import train

    cfg = train_cfg("trainer.gradient_clip_val=0.5", "callbacks.ema.warmup=true")
    assert instantiate(cfg.trainer).gradient_clip_val == 0.5
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])
