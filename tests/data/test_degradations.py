import math

import kornia
import pytest
import torch

import ucdir.data.degradations as degradations
from ucdir.data.degradations import DegradationStage, SecondOrderDegradation
from ucdir.data.kernels import gaussian_family_kernel, sinc_kernel


def test_isotropic_gaussian_matches_kornia() -> None:
    ours = gaussian_family_kernel(21, 2.5, 2.5)
    theirs = kornia.filters.get_gaussian_kernel2d((21, 21), (2.5, 2.5))[0]
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_anisotropic_kernels_rotate_and_change_shape() -> None:
    k0 = gaussian_family_kernel(15, 3.0, 1.0, theta=0.0)
    k90 = gaussian_family_kernel(15, 3.0, 1.0, theta=math.pi / 2)
    torch.testing.assert_close(k90, k0.T, atol=1e-7, rtol=1e-5)
    assert k0[7].sum() > k0[:, 7].sum()  # wide along x
    for shape in ("generalized", "plateau"):
        k = gaussian_family_kernel(15, 2.0, 2.0, shape=shape, beta=1.5)  # type: ignore[arg-type]
        assert k.shape == (15, 15) and abs(float(k.sum()) - 1) < 1e-5 and k.min() >= 0
    torch.testing.assert_close(
        gaussian_family_kernel(9, 1.5, 1.5, shape="generalized", beta=1.0),
        gaussian_family_kernel(9, 1.5, 1.5),
    )
    with pytest.raises(ValueError, match="odd"):
        gaussian_family_kernel(8, 1.0, 1.0)


def test_sinc_kernel_is_a_radial_low_pass() -> None:
    k = sinc_kernel(21, math.pi / 3)
    assert abs(float(k.sum()) - 1) < 1e-5 and k[10, 10] == k.max()
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k, k.flip(0))
    assert k.min() < 0  # ringing lobes
    with pytest.raises(ValueError, match="cutoff"):
        sinc_kernel(21, 4.0)


def test_same_seed_same_degradation_any_size() -> None:
    model = SecondOrderDegradation()
    for size in ((64, 64), (37, 53), (8, 11)):
        gt = torch.rand(3, *size)
        lq, scalars = model(gt, torch.Generator().manual_seed(3))
        again, scalars_again = model(gt, torch.Generator().manual_seed(3))
        assert torch.equal(lq, again) and scalars == scalars_again
        assert lq.shape == gt.shape and lq.dtype == torch.float32
        assert float(lq.min()) >= 0 and float(lq.max()) <= 1
        torch.testing.assert_close(lq * 255, (lq * 255).round(), atol=1e-4, rtol=0)  # 8-bit
        assert set(scalars) == set(SecondOrderDegradation.scalar_names)
        assert all(0 <= v <= 1 for v in scalars.values())


def test_draws_vary_and_degrade() -> None:
    gt = torch.rand(3, 48, 48)
    model = SecondOrderDegradation()
    outs = [model(gt, torch.Generator().manual_seed(s)) for s in range(6)]
    assert len({round(float(lq.mean()), 6) for lq, _ in outs}) == 6
    assert all(float((lq - gt).abs().mean()) > 0.01 for lq, _ in outs)
    assert len({s["quality"] for _, s in outs}) > 1


def test_stage_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="kernel_probs"):
        DegradationStage(kernel_probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="jpeg_range"):
        DegradationStage(jpeg_range=(30, 120))
    with pytest.raises(ValueError, match="resize_range"):
        DegradationStage(resize_range=(1.2, 1.5))


@pytest.mark.parametrize("blur_prob", [0.0, 1.0])
def test_stage_blurs_with_its_blur_prob(blur_prob: float) -> None:
    stage = DegradationStage(blur_prob=blur_prob, sinc_prob=0.0)
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    for seed in range(10):
        out, sigma = stage.blur(x, torch.Generator().manual_seed(seed))
        if blur_prob == 0:
            assert out is x and sigma == 0.0
        else:
            assert not torch.equal(out, x) and sigma >= stage.sigma[0]


def _blur_calls(model: SecondOrderDegradation, seed: int, monkeypatch: pytest.MonkeyPatch) -> int:
    calls = []

    def counting_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        calls.append(kernel.shape)
        return blur(x, kernel)

    blur = degradations._blur
    monkeypatch.setattr(degradations, "_blur", counting_blur)
    try:
        model(torch.rand(3, 32, 32), torch.Generator().manual_seed(seed))
    finally:
        monkeypatch.setattr(degradations, "_blur", blur)
    return len(calls)


def test_first_stage_blur_prob_decides_the_first_blur(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the second blur and the final sinc off, the only blur is the first stage's: never at
    blur_prob 0, always at 1, per sample (from its generator) at 0.5."""

    def model(p: float) -> SecondOrderDegradation:
        return SecondOrderDegradation(
            first=DegradationStage(blur_prob=p, sinc_prob=0.0),
            second=DegradationStage(blur_prob=0.0),
            final_sinc_prob=0.0,
        )

    seeds = range(12)
    assert [_blur_calls(model(0.0), s, monkeypatch) for s in seeds] == [0] * 12
    assert [_blur_calls(model(1.0), s, monkeypatch) for s in seeds] == [1] * 12
    half = [_blur_calls(model(0.5), s, monkeypatch) for s in seeds]
    assert set(half) == {0, 1} and half == [_blur_calls(model(0.5), s, monkeypatch) for s in seeds]
    gt = torch.rand(3, 32, 32)
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        assert model(0.0)(gt, g)[1]["blur_sigma"] == 0.0  # no kernel: its scalar is 0
        assert model(1.0)(gt, torch.Generator().manual_seed(seed))[1]["blur_sigma"] > 0


def test_blind_config_passes_the_first_blur_prob() -> None:
    from hydra.utils import instantiate

    from tests.data.conftest import compose_task

    cfg = compose_task("blind", "data.degradation.first.blur_prob=0.0")
    assert instantiate(cfg.data.degradation).first.blur_prob == 0.0
    with pytest.raises(ValueError, match="blur_prob"):
        DegradationStage(blur_prob=1.5)
