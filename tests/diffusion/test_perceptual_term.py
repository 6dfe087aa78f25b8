"""The optional perceptual training term (LPIPS-VGG / LPIPS-Alex / DISTS) of the regression and
distillation objectives: what it scores, that it trains, that it is refused or named when wrong,
and that the frozen network never becomes part of the trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import compose
from tests.diffusion.helpers import load_sampler
from tests.diffusion.test_distill import EVAL, TINY_DENOISER, TINY_PREDICTOR, teacher
from tests.weights.fakes import random_state
from ucdir.diffusion.conditioning import make_cond, to_diffusion
from ucdir.diffusion.distill import DistillObjective, student_residual
from ucdir.diffusion.objective import PerceptualTerm, RegressionObjective, perceptual_term
from ucdir.hub import UCDIR
from ucdir.lit_module import UCDIRLitModule
from ucdir.metrics.perceptual import build_lpips_alex
from ucdir.metrics.weights import MissingWeightsError

REGRESSION_DENOISER = {**TINY_DENOISER, "prediction_type": "epsilon"}


@pytest.fixture
def alex_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A random AlexNet trunk and LPIPS heads as the converted file, the only one looked up."""
    folder = tmp_path / "weights"
    folder.mkdir()
    save_file(random_state("alexnet", seed=5), str(folder / "alexnet_lpips.safetensors"))
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return folder


def batch(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lq = torch.rand(2, 3, 32, 32, generator=gen)
    gt = (lq + 0.1 * torch.randn(2, 3, 32, 32, generator=gen)).clamp(0, 1)
    return lq, gt


def test_the_term_is_the_metric_on_images_in_diffusion_scale(alex_weights: Path) -> None:
    term = PerceptualTerm("lpips_alex")
    metric = build_lpips_alex()
    a, b = batch()
    restored = to_diffusion(a).requires_grad_(True)
    value = term(restored, to_diffusion(b))
    assert torch.allclose(value, metric(a, b).mean(), atol=1e-6)
    value.backward()
    assert restored.grad is not None and restored.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in term.net.parameters())


def test_bad_settings_are_refused_and_missing_weights_named(
    alex_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="perceptual must be one of lpips_vgg, lpips_alex"):
        PerceptualTerm("vgg19")
    with pytest.raises(ValueError, match="perceptual_weight must be >= 0"):
        RegressionObjective(perceptual="lpips_alex", perceptual_weight=-1.0)
    assert perceptual_term("no-such-network", 0.0) is None  # weight 0: nothing is built
    assert RegressionObjective(perceptual_weight=0.0)._term is None
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path / "nothing_here"))
    with pytest.raises(MissingWeightsError, match=r"vgg16_lpips\.safetensors"):
        RegressionObjective(perceptual="lpips_vgg", perceptual_weight=1.0)


def test_the_regression_control_adds_the_weighted_term_and_trains_it(alex_weights: Path) -> None:
    torch.manual_seed(0)
    model = UCDIR(TINY_PREDICTOR, REGRESSION_DENOISER)
    plain = RegressionObjective(aux_l1_weight=1.0)
    control = RegressionObjective(aux_l1_weight=1.0, perceptual="lpips_alex", perceptual_weight=2.0)
    lq, gt = batch()
    base = plain(model.predictor, model.denoiser, lq, gt)
    out = control(model.predictor, model.denoiser, lq, gt)
    assert set(out.parts or {}) == {"regression", "perceptual", "aux"}
    parts = out.parts or {}
    assert torch.allclose(out.main, base.main) and torch.allclose(out.aux, base.aux)
    assert torch.allclose(out.loss, base.loss + 2.0 * parts["perceptual"])
    with torch.no_grad():
        x_init = model.predictor(to_diffusion(lq))
        cond = make_cond(to_diffusion(lq), x_init, None)
        r0 = model.denoiser(torch.zeros_like(x_init), torch.ones(2), cond)
    expected = build_lpips_alex()(((x_init + r0 + 1) / 2), gt).mean()
    assert torch.allclose(parts["perceptual"], expected, atol=1e-6)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out.loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = control(model.predictor, model.denoiser, lq, gt).parts or {}
    assert float(after["perceptual"]) < float(parts["perceptual"].detach())


def test_the_student_term_scores_its_one_call_restoration_from_the_drawn_noise(
    alex_weights: Path,
) -> None:
    """The perceptual part is the metric of x_init + r̂0(x_T, γ_0) — what `sampler=distilled
    sampler.steps=1` returns from the same x_T before its clamp — and one step lowers it."""
    source = teacher(0)
    objective = DistillObjective(
        source,
        load_sampler("dpmpp", steps=4),
        EVAL,
        perceptual="lpips_alex",
        perceptual_weight=0.5,
    )
    student = UCDIR(TINY_PREDICTOR, TINY_DENOISER)
    student.load_state_dict(source.state_dict())
    lq, gt = batch()

    def loss():
        return objective(
            student.predictor, student.denoiser, lq, gt, generator=torch.Generator().manual_seed(3)
        )

    first = loss()
    parts = first.parts or {}
    assert set(parts) == {"distill", "inverse", "gt", "perceptual"}
    weights = {"distill": 1.0, "inverse": 1.0, "gt": 1.0, "perceptual": 0.5}
    assert torch.allclose(first.loss, sum(w * parts[k] for k, w in weights.items()))
    x_T = torch.randn(gt.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lq_d = to_diffusion(lq)
        x_init = student.predictor(lq_d)
        gamma = objective._levels[1][0].float().expand(2)
        one_call = x_init + student_residual(
            student.denoiser, x_T, gamma, make_cond(lq_d, x_init, None)
        )
    expected = build_lpips_alex()((one_call + 1) / 2, gt).mean()
    assert torch.allclose(parts["perceptual"], expected, atol=1e-6)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    first.loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert float((loss().parts or {})["perceptual"]) < float(parts["perceptual"].detach())


def test_the_experiments_compose_and_the_metric_network_is_not_saved(alex_weights: Path) -> None:
    for name, target in (
        ("jpeg_cpu_distill_lpips", "ucdir.diffusion.distill.DistillObjective"),
        ("jpeg_cpu_regression_lpips", "ucdir.diffusion.objective.RegressionObjective"),
    ):
        cfg = compose("train", [f"experiment={name}"])
        objective = cfg.model.objective
        assert objective._target_ == target
        assert objective.perceptual == "lpips_alex" and objective.perceptual_weight == 2.0
        assert cfg.trainer.max_steps == 1200
    cfg = compose("train", ["experiment=jpeg_cpu_distill_lpips"])
    assert cfg.pretrained == "jpeg-cpu" and cfg.model.objective.teacher == "jpeg-cpu"
    assert compose("train", ["experiment=jpeg_cpu_regression_lpips"]).pretrained == (
        "jpeg-cpu-regression"
    )
    nets = UCDIR(TINY_PREDICTOR, REGRESSION_DENOISER)
    model = UCDIRLitModule(
        predictor=nets.predictor,
        denoiser=nets.denoiser,
        objective=RegressionObjective(perceptual="lpips_alex", perceptual_weight=1.0),
        sampler=load_sampler("ddim", steps=2),
    )
    assert set(model.state_dict()) == {
        *(f"predictor.{k}" for k in nets.predictor.state_dict()),
        *(f"denoiser.{k}" for k in nets.denoiser.state_dict()),
    }
