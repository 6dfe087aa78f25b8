import math

import kornia
import pytest
import torch

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
