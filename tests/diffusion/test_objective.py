import pytest
import torch

from ucdir.diffusion.conditioning import make_cond
from ucdir.diffusion.objective import RegressionObjective, ResidualObjective
from ucdir.diffusion.schedules import LinearSchedule, gammas
from ucdir.models import ConditionalUNet, InitialPredictor

TINY = dict(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4)


def test_gamma_is_drawn_per_sample_between_adjacent_levels() -> None:
    schedule = LinearSchedule(20, 1e-4, 0.3)
    objective = ResidualObjective(schedule)
    g = objective.sample_gamma(4000, torch.device("cpu"), torch.Generator().manual_seed(0))
    levels = gammas(schedule).float()  # 1 = levels[0] > levels[1] > ... > levels[20]
    assert (levels[1:] < levels[:-1]).all() and levels[0] == 1
    assert g.shape == (4000,) and float(g.min()) >= float(levels[-1]) and float(g.max()) <= 1
    # interval t in 1..20 holds levels[t] <= g < levels[t-1]; bucketize needs ascending bounds,
    # so it reads the negated (ascending) levels
    idx = torch.bucketize(-g, -levels)
    assert int(idx.min()) >= 1 and int(idx.max()) <= 20
    counts = torch.bincount(idx, minlength=21)[1:]
    assert counts.min() > 120 and counts.max() < 280  # equal mass per interval (200 each)
    # uniform inside its interval: not the levels themselves, nor their midpoints
    u = (g - levels[idx]) / (levels[idx - 1] - levels[idx])
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    for q in (0.25, 0.5, 0.75):
        assert abs(float((u < q).float().mean()) - q) < 0.03, q
    assert len(set(g[:8].tolist())) == 8  # not one level for the whole batch


def overfit(objective, steps: int = 40) -> list[float]:
    torch.manual_seed(0)
    predictor, denoiser = InitialPredictor(), ConditionalUNet(**TINY)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(4, 3, 32, 32, generator=g)
    lq = (gt + 0.2 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    params = [*predictor.parameters(), *denoiser.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = objective(predictor, denoiser, lq, gt, None, torch.Generator().manual_seed(1)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(
    "objective",
    [
        ResidualObjective(LinearSchedule()),
        ResidualObjective(LinearSchedule(), "l2", 0.5),
        RegressionObjective(),
    ],
    ids=["residual-l1", "residual-l2-aux", "regression"],
)
def test_loss_decreases_when_overfitting_one_batch(objective) -> None:
    losses = overfit(objective)
    assert losses[-1] < 0.6 * losses[0], losses[::8]


def test_predictor_is_trained_through_the_diffusion_loss() -> None:
    predictor, denoiser = InitialPredictor(), ConditionalUNet(**TINY)
    loss = ResidualObjective(LinearSchedule())(
        predictor, denoiser, torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    ).loss
    loss.backward()
    assert all(p.grad is not None for p in predictor.parameters())


def test_make_cond_upsamples_packed_raw_and_drops_empty_scalars() -> None:
    cond = make_cond(torch.rand(2, 4, 8, 10), torch.rand(2, 3, 16, 20), torch.zeros(2, 0))
    assert cond.lq.shape == (2, 4, 16, 20) and cond.scalars is None


def test_bad_objective_arguments_raise() -> None:
    with pytest.raises(ValueError, match="loss"):
        ResidualObjective(LinearSchedule(), "huber")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_each_prediction_type_trains_on_its_own_target_and_forward_returns_eps(kind) -> None:
    """The objective's loss is the distance of the raw output to the target of its type, and
    `forward` converts any raw output to the ε the samplers use."""
    from ucdir.diffusion.parametrization import prediction_target

    torch.manual_seed(0)
    predictor = InitialPredictor()
    denoiser = ConditionalUNet(**TINY, prediction_type=kind, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    lq = (gt + 0.2 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    objective = ResidualObjective(LinearSchedule())
    loss = objective(predictor, denoiser, lq, gt, None, torch.Generator().manual_seed(3))
    # replay the objective's draws and compute the same loss by hand
    gen = torch.Generator().manual_seed(3)
    gamma = objective.sample_gamma(2, torch.device("cpu"), gen)
    x_init = predictor(lq * 2 - 1)
    r0 = gt * 2 - 1 - x_init
    eps = torch.randn(r0.shape, generator=gen)
    gv = gamma.view(-1, 1, 1, 1)
    x_t = gv * r0 + (1 - gv**2).sqrt() * eps
    cond = make_cond(lq * 2 - 1, x_init, None)
    out = denoiser.predict(x_t, gamma, cond)
    expected = (out - prediction_target(r0, eps, gamma, kind)).abs().mean()
    torch.testing.assert_close(loss.main, expected)
    # forward: the ε implied by the raw output (r̂0 = (x_t − σ ε̂)/γ recovers a sample output)
    eps_hat = denoiser(x_t, gamma.double(), cond)
    r0_hat = (x_t - (1 - gv**2).sqrt() * eps_hat) / gv
    if kind == "sample":
        torch.testing.assert_close(r0_hat, out, atol=1e-4, rtol=1e-4)
    elif kind == "epsilon":
        torch.testing.assert_close(eps_hat, out)
    else:  # v = γ ε − σ r0
        v = gv * eps_hat - (1 - gv**2).sqrt() * r0_hat
        torch.testing.assert_close(v, out, atol=1e-4, rtol=1e-4)


def test_prediction_type_is_checked_and_regression_needs_epsilon() -> None:
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        ConditionalUNet(**TINY, prediction_type="x0")
    denoiser = ConditionalUNet(**TINY, prediction_type="sample")
    gt = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="prediction_type=epsilon"):
        RegressionObjective()(InitialPredictor(), denoiser, gt, gt)
