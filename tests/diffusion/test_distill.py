"""Few-step distillation: the objective, the distilled sampler's contract, and its use in
`restore` with inter-step patch splitting and the fidelity guidance."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose
from tests.diffusion.helpers import load_sampler, local_eps, make_cond
from ucdir.diffusion.distill import (
    DistilledSampler,
    DistillObjective,
    level_timesteps,
    student_levels,
)
from ucdir.diffusion.fidelity import gaussian_lowpass
from ucdir.diffusion.parametrization import eps_from_residual
from ucdir.diffusion.patching import NaivePatchSplit, PatchSplit, spans
from ucdir.diffusion.schedules import LinearSchedule
from ucdir.hub import UCDIR
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.restore import restore
from ucdir.types import Cond

EVAL = LinearSchedule(50, 1e-6, 0.4)

TINY_PREDICTOR = {
    "_target_": "ucdir.models.predictor.InitialPredictor",
    "width": 8,
    "global_residual": True,
}
TINY_DENOISER = {
    "_target_": "ucdir.models.denoiser.ConditionalUNet",
    "width": 8,
    "mults": [1, 2],
    "attn_levels": [],
    "mid_attn": False,
    "kernels": 2,
    "dropout": 0.0,
    "prediction_type": "sample",
}


def teacher(seed: int = 0) -> UCDIR:
    torch.manual_seed(seed)
    return UCDIR(TINY_PREDICTOR, TINY_DENOISER).eval()


def exact_oracle(r0: torch.Tensor, seen: list[torch.Tensor] | None = None):
    """The ε an exact student returns: the one consistent with the known end point r0 (float64)."""

    def eps_fn(x: torch.Tensor, gamma: torch.Tensor, cond: Cond) -> torch.Tensor:
        if seen is not None:
            seen.append(x.clone())
        return eps_from_residual(x, gamma, r0)

    return eps_fn


def test_levels_start_at_the_noisiest_step_and_are_evenly_spaced() -> None:
    assert level_timesteps(50, 1) == [49]
    assert level_timesteps(50, 2) == [49, 24]
    assert level_timesteps(50, 4) == [49, 37, 24, 12]
    levels = student_levels(EVAL, 4)
    assert levels.dtype == torch.float64 and bool((levels[1:] > levels[:-1]).all())
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.50"):
        DistilledSampler(EVAL, steps=51)


@pytest.mark.parametrize("steps", [1, 2, 4, 10])
def test_an_exact_student_returns_the_end_point_exactly(steps: int) -> None:
    """The sampler contract: whatever K, an oracle student gives the teacher's end point, and
    the states it sees are the ones the objective trains on."""
    gen = torch.Generator().manual_seed(0)
    r0 = (torch.rand(2, 3, 24, 40, generator=gen, dtype=torch.float64) * 1.6 - 0.8).clamp(-1, 1)
    plain = make_cond(2)
    cond = Cond(plain.lq.double(), plain.x_init.double())
    sampler = DistilledSampler(EVAL, steps=steps)
    x_T = sampler.initial_noise(tuple(r0.shape), r0, torch.Generator().manual_seed(1))
    seen: list[torch.Tensor] = []
    out = sampler(exact_oracle(r0, seen), x_T, cond)
    torch.testing.assert_close(out, r0, atol=1e-10, rtol=0)
    assert len(seen) == steps
    objective = DistillObjective(teacher(), load_sampler("ddim", steps=5), EVAL, steps=[1, steps])
    for x_k, gamma in zip(seen, student_levels(EVAL, steps), strict=True):
        expected = objective.states(x_T, r0, gamma.expand(2))
        torch.testing.assert_close(x_k, expected, atol=1e-9, rtol=0)


def test_the_distilled_sampler_clamps_and_reports_each_call() -> None:
    r0 = torch.full((1, 3, 8, 8), 3.0, dtype=torch.float64)
    sampler = DistilledSampler(EVAL, steps=2)
    x_T = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    steps: list[int] = []
    out = sampler(exact_oracle(r0), x_T, Cond(x_T, x_T), callback=lambda i, x: steps.append(i))
    assert steps == [0, 1] and float(out.max()) == 1.0


def test_one_step_lowers_the_distillation_loss_on_a_fixed_batch() -> None:
    """One optimizer step of the student on a fixed batch (same noise and levels) lowers every
    term it trains, and the teacher does not move."""
    source = teacher(0)
    objective = DistillObjective(source, load_sampler("dpmpp", steps=4), EVAL)
    before_teacher = {k: v.clone() for k, v in source.state_dict().items()}
    student = UCDIR(TINY_PREDICTOR, TINY_DENOISER)
    student.load_state_dict(source.state_dict())
    torch.manual_seed(1)
    last = student.denoiser.head[-1].weight
    last.data += 0.05 * torch.randn_like(last)
    gen = torch.Generator().manual_seed(2)
    lq = torch.rand(4, 3, 32, 32, generator=gen)
    gt = (lq + 0.1 * torch.randn(4, 3, 32, 32, generator=gen)).clamp(0, 1)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)

    def loss():
        return objective(
            student.predictor, student.denoiser, lq, gt, generator=torch.Generator().manual_seed(3)
        )

    first = loss()
    assert set(first.parts or {}) == {"distill", "inverse", "gt"}
    first.loss.backward()
    optimizer.step()
    with torch.no_grad():
        second = loss()
    assert float(second.loss) < float(first.loss.detach())
    assert float(second.main) < float(first.main.detach())  # the distillation term itself
    for key, value in source.state_dict().items():
        assert torch.equal(value, before_teacher[key]), key
    assert all(not p.requires_grad for p in source.parameters())


def test_the_teacher_end_point_is_the_teacher_sampler_from_the_same_noise() -> None:
    source = teacher(0)
    sampler = load_sampler("ddim", steps=5)
    objective = DistillObjective(source, sampler, EVAL)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x_init, r0 = objective.teacher_end_point(lq, x_T, None)
    expected = restore(
        (lq + 1) / 2, source.predictor, source.denoiser, _FixedNoise(sampler, x_T)
    ).restored
    torch.testing.assert_close(((x_init + r0 + 1) / 2).clamp(0, 1), expected, atol=1e-6, rtol=0)


class _FixedNoise:
    """A sampler that starts from a given x_T (to compare with the objective's teacher)."""

    def __init__(self, sampler, x_T: torch.Tensor) -> None:
        self.sampler, self.x_T, self.steps = sampler, x_T, sampler.steps

    def __call__(self, eps_fn, x_T, cond, **kwargs):
        return self.sampler(eps_fn, self.x_T, cond, **kwargs)

    def initial_noise(self, shape, like, generator):
        return self.x_T


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="deterministic"):
        DistillObjective(teacher(), load_sampler("ddpm", steps=5), EVAL)
    with pytest.raises(ValueError, match="needs a teacher: pretrained="):
        DistillObjective(None, load_sampler("ddim", steps=5), EVAL)
    with pytest.raises(ValueError, match="deterministic"):
        DistillObjective(teacher(), load_sampler("ddim", steps=5, eta=1.0), EVAL)
    with pytest.raises(ValueError, match="inverse_weight"):
        DistillObjective(teacher(), load_sampler("ddim", steps=5), EVAL, inverse_weight=0.0)
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.50"):
        DistillObjective(teacher(), load_sampler("ddim", steps=5), EVAL, steps=[1, 64])


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("merge", ["drop", "feather"])
def test_inter_step_splitting_with_the_distilled_sampler_equals_the_whole_image(
    steps: int, merge: str
) -> None:
    """Every student call is tiled with overlaps: for a network of small reach the tiled
    restoration is the whole-image one; sampling each tile on its own is not."""
    sampler = DistilledSampler(EVAL, steps=steps)
    eps_fn = local_eps()
    lq = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(2))
    predictor = torch.nn.Identity()

    def run(patch):
        return restore(lq, predictor, eps_fn, sampler, patch, torch.Generator().manual_seed(0))

    whole = run(None).restored
    # float32 ε rounding (~1e-7) becomes ~1e-7·σ/γ ≈ 3e-5 in the residual at the first level
    # (γ = 0.0029): far below an 8-bit step (3.9e-3)
    torch.testing.assert_close(run(PatchSplit(32, 8, merge)).restored, whole, atol=1e-4, rtol=0)
    assert (run(NaivePatchSplit(32, 8)).restored - whole).abs().max() > 1e-2


def test_fidelity_guidance_applies_to_every_student_call() -> None:
    """One step with the exact student and guidance w: r0 − w·lowpass(r0), as the guidance
    defines it for any sampler step."""
    gen = torch.Generator().manual_seed(0)
    r0 = torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64) * 0.8 - 0.4
    lq = torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64)
    sampler = DistilledSampler(EVAL, steps=1)
    guided = restore(
        lq,
        torch.nn.Identity(),
        exact_oracle(r0),
        sampler,
        None,
        torch.Generator().manual_seed(1),
        guidance=1.0,
    )
    expected = ((lq * 2 - 1 + r0 - 0.5 * gaussian_lowpass(r0, 4.0)) + 1) / 2
    torch.testing.assert_close(guided.restored, expected.clamp(0, 1), atol=1e-9, rtol=0)


@pytest.mark.slow
def test_a_real_network_leaves_no_seams_with_the_distilled_sampler() -> None:
    from tests.diffusion.test_patching import boundary_excess

    torch.manual_seed(0)
    net = ConditionalUNet(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4).eval()
    predictor = InitialPredictor().eval()
    lq = torch.rand(1, 3, 200, 300, generator=torch.Generator().manual_seed(3))
    boundaries = [s.core_stop for s in spans(300, 128, 32)[:-1]]
    for steps in (1, 4):
        sampler = DistilledSampler(EVAL, steps=steps)
        tiled = restore(lq, predictor, net, sampler, PatchSplit(128, 32), torch.Generator())
        inter = boundary_excess(tiled.restored - tiled.x_init, boundaries)
        assert inter < 1.15, (steps, inter)  # the bound of the paper sampler's seam test


def test_the_distill_configs_compose_and_the_teacher_is_not_part_of_the_student() -> None:
    cfg = compose("train", ["experiment=jpeg_cpu_distill", "paths.output_dir=.", "sampler.steps=4"])
    assert cfg.pretrained == "jpeg-cpu" and cfg.model.objective.teacher == "jpeg-cpu"
    sampler = instantiate(cfg.sampler)
    assert isinstance(sampler, DistilledSampler) and sampler.steps == 4
    teacher_sampler = instantiate(cfg.model.objective.teacher_sampler)
    assert teacher_sampler.name == "DPMSolverMultistepScheduler" and teacher_sampler.steps == 10
    cfg.model.objective.teacher = None  # built below from an in-memory teacher
    objective = instantiate(cfg.model.objective, teacher=teacher())
    module = instantiate(cfg.model, objective=objective)
    names = set(module.state_dict())
    assert names and all(n.startswith(("predictor.", "denoiser.")) for n in names)


@pytest.mark.slow
def test_distillation_is_a_normal_training_run(checkpoint, tmp_path) -> None:
    """`model/objective=distill pretrained=<teacher>`: the student starts as the teacher, logs
    its terms, resumes from last.ckpt, exports without the teacher, and restores in one call."""
    import csv

    from ucdir.export import export
    from ucdir.train import train

    teacher_dir = export(checkpoint, tmp_path / "teacher")
    run = tmp_path / "run"

    def overrides(steps: int) -> list[str]:
        return [
            "debug=tiny",
            f"paths.output_dir={run}",
            "model/objective=distill",
            f"pretrained={teacher_dir}",
            "model.objective.teacher_sampler.steps=2",
            "model.objective.steps=[1,2]",
            "sampler=distilled",
            "logger=csv",
            "trainer.fast_dev_run=false",
            "trainer.log_every_n_steps=1",
            "trainer.limit_val_batches=1",
            "trainer.val_check_interval=2",
            "callbacks.model_checkpoint.every_n_train_steps=1",
            f"trainer.max_steps={steps}",
        ]

    train(compose("train", overrides(2)))
    last = run / "checkpoints" / "last.ckpt"
    train(compose("train", [*overrides(3), f"ckpt_path={last}"]))
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert all(k.startswith(("predictor.", "denoiser.")) for k in state)
    assert state and not any("teacher" in k for k in state)
    rows = []
    for path in sorted(run.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    steps = sorted(int(r["step"]) for r in rows if r.get("train/distill"))
    assert steps == [0, 1, 2], steps  # 2 steps, then 1 more after the resume
    assert all(r["train/inverse"] and r["train/gt"] for r in rows if r.get("train/distill"))
    assert any(r.get("val/psnr") for r in rows)
    student = UCDIR.load(export(last, tmp_path / "student"))
    default = student.default_sampler()
    assert isinstance(default, DistilledSampler) and default.steps == 2  # debug=tiny's steps
    lq = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    calls = []
    student.denoiser.register_forward_hook(lambda *a: calls.append(1))
    one = DistilledSampler(default.schedule, steps=1)
    out = student.restore(lq, sampler=one, generator=torch.Generator().manual_seed(0))
    assert out.restored.shape == lq.shape and len(calls) == 1
