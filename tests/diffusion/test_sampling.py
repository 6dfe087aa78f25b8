import pytest
import torch

from tests.diffusion.helpers import load_sampler, make_cond, options, oracle
from ucdir.diffusion.sampling import RegressionSampler, Sampler

SAMPLERS = [s for s in options("sampler") if s not in ("regression", "model")]  # model: the own one
SCHEDULES = options("schedule")
CASES = [(s, k) for s in SAMPLERS for k in SCHEDULES]


def test_every_sampler_and_schedule_is_found() -> None:
    assert {"ddpm", "ddim", "dpmpp", "unipc"} <= set(SAMPLERS)
    assert {"linear_train", "linear_eval", "cosine"} <= set(SCHEDULES)


@pytest.mark.parametrize("sampler_name,schedule", CASES)
def test_sampler_contract(sampler_name: str, schedule: str) -> None:
    sampler: Sampler = load_sampler(sampler_name, schedule, steps=10)
    cond = make_cond(2)
    r0 = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    calls = []

    def counted(x, g, c):
        calls.append(1)
        return oracle(r0)(x, g, c)

    steps: list[int] = []

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        x_T = sampler.initial_noise(tuple(r0.shape), r0, gen)
        return sampler(counted, x_T, cond, generator=gen, callback=lambda i, x: steps.append(i))

    out = run(0)
    assert out.shape == r0.shape
    # one network call per step; Heun (2nd order, sigma space) two, but one for the last step
    assert len(calls) == (2 * 10 - 1 if sampler_name == "heun" else 10)
    assert steps == list(range(10))  # progress: one callback per step for every sampler
    assert getattr(sampler, "sigma_space", False) == (sampler_name in ("euler", "heun"))
    # an oracle that knows r0 makes every sampler return r0 (tolerance 1e-3 in [-1, 1] scale)
    torch.testing.assert_close(out, r0, atol=1e-3, rtol=0)
    torch.testing.assert_close(run(0), run(0), atol=0, rtol=0)


@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_same_generator_same_output_with_a_network(sampler_name: str) -> None:
    """With a non-oracle predictor the output depends on the noise only through the generator."""
    sampler = load_sampler(sampler_name, steps=5)
    cond = make_cond(1)

    def eps_fn(x, g, c):
        return 0.7 * x + 0.1 * c.lq

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sampler(
            eps_fn, sampler.initial_noise((1, 3, 24, 40), cond.lq, gen), cond, generator=gen
        )

    torch.testing.assert_close(run(3), run(3), atol=0, rtol=0)
    assert not torch.equal(run(3), run(4))


def test_ddpm_is_the_official_sampler() -> None:
    sampler = load_sampler("ddpm")
    assert sampler.steps == 50 and sampler.clip_residual == 1.0
    assert sampler.schedule.num_steps == 50 and sampler.schedule.beta_end == 0.4
    assert sampler.name == "DDPMScheduler"


def test_residual_is_clamped() -> None:
    sampler = load_sampler("ddim", steps=5)
    cond = make_cond(1)
    r0 = torch.full((1, 3, 24, 40), 1.7)
    out = sampler(oracle(r0), torch.randn(1, 3, 24, 40), cond)
    assert float(out.max()) <= 1.0 + 1e-3


def test_callback_sees_every_step() -> None:
    sampler = load_sampler("dpmpp", steps=4)
    seen = []
    sampler(
        oracle(torch.zeros(1, 3, 8, 8)),
        torch.randn(1, 3, 8, 8),
        make_cond(1, 8, 8),
        callback=lambda i, x: seen.append((i, x.shape)),
    )
    assert [i for i, _ in seen] == [0, 1, 2, 3]


def test_too_many_steps_raise() -> None:
    sampler = load_sampler("ddpm")
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.50"):
        Sampler(sampler.scheduler, sampler.schedule, steps=51)


def test_regression_sampler_is_one_call_at_gamma_one() -> None:
    seen = []

    def eps_fn(x, g, c):
        seen.append((float(x.abs().max()), g.tolist()))
        return c.lq

    cond = make_cond(2)
    out = RegressionSampler()(eps_fn, torch.randn(2, 3, 24, 40), cond)
    torch.testing.assert_close(out, cond.lq)
    assert seen == [(0.0, [1.0, 1.0])]


def test_clamped_last_ddpm_step_is_the_exact_posterior_step() -> None:
    """At t = 0 the DDPM posterior mean is the (clamped) residual estimate itself: coefficient
    sqrt(ᾱ_prev)·β_0/(1 − ᾱ_0) = 1 on r̂0 and 0 on x_t, no noise. A float32 σ = sqrt(1 − γ²) at
    γ ≈ 0.9999995 used to miss it by ~3 % of the overshoot."""
    sampler = load_sampler("ddpm", steps=1)  # one step: t = 0 of the 50-step schedule
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, 3, 16, 16, generator=gen) * 3
    eps = torch.randn(1, 3, 16, 16, generator=gen)
    # ᾱ_0 = 1 − β_0 ≈ 1 − 1e-6 as the scheduler holds it (float32), in float64 from here on
    alpha_bar = sampler._template.alphas_cumprod[0].double()
    r_hat = (x_t.double() - (1 - alpha_bar).sqrt() * eps.double()) / alpha_bar.sqrt()
    expected = r_hat.clamp(-1, 1).float()
    assert float((r_hat.abs() > 1).float().mean()) > 0.3  # the clamp is exercised
    out = sampler(lambda x, g, c: eps, x_t, make_cond(1, 16, 16), generator=gen)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert out.dtype == torch.float32


def test_network_gets_float64_levels_and_its_output_keeps_the_dtype() -> None:
    sampler = load_sampler("dpmpp", steps=3)
    seen = []

    def eps_fn(x, g, c):
        seen.append(g.dtype)
        return x * g.view(-1, 1, 1, 1)  # float64 result: the adapter casts it back

    out = sampler(eps_fn, torch.randn(1, 3, 8, 8), make_cond(1, 8, 8))
    assert seen == [torch.float64] * 3 and out.dtype == torch.float32


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_an_oracle_of_any_prediction_type_samples_the_exact_residual(kind) -> None:
    """A network that outputs the exact r0 (or v) gives the same end point as the ε-oracle."""
    from ucdir.diffusion.parametrization import eps_from_prediction, prediction_target

    r0 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    eps_oracle = oracle(r0)

    def native(x: torch.Tensor, g: torch.Tensor, cond) -> torch.Tensor:
        eps = eps_oracle(x, g, cond)
        return prediction_target(r0.to(g.dtype), eps.to(g.dtype), g, kind).to(x.dtype)

    def as_eps(x: torch.Tensor, g: torch.Tensor, cond) -> torch.Tensor:
        return eps_from_prediction(x, g, native(x, g, cond), kind)

    sampler = load_sampler("ddim", steps=10)
    cond = make_cond(1, 8, 8)
    x_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = sampler(as_eps, x_T, cond)
    torch.testing.assert_close(out, r0, atol=1e-4, rtol=1e-4)
