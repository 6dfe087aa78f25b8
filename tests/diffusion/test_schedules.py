import pytest
import torch

from ucdir.diffusion.schedules import CosineSchedule, LinearSchedule, gammas


def test_official_training_schedule_end_level() -> None:
    g = gammas(LinearSchedule(2000, 1e-6, 0.01))
    assert g.shape == (2001,) and g[0] == 1
    assert abs(float(g[-1]) - 0.00662) < 1e-4  # notes §3.1: sqrt(alpha_bar_T) = 0.00662


def test_official_eval_schedule_end_level() -> None:
    g = gammas(LinearSchedule(50, 1e-6, 0.4))
    assert abs(float(g[-1]) - 0.00287) < 2e-5  # notes §3.1


def test_cosine_is_decreasing_and_bounded() -> None:
    betas = CosineSchedule(1000).betas
    assert betas.shape == (1000,) and float(betas.max()) <= 0.999 and float(betas.min()) > 0
    assert torch.all(gammas(CosineSchedule(1000)).diff() < 0)


@pytest.mark.parametrize("kwargs", [dict(num_steps=0), dict(beta_start=0.5, beta_end=0.1)])
def test_bad_schedules_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LinearSchedule(**kwargs)
