"""PSNR, SSIM and the official 3-D SSIM against values computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from tests.metrics.conftest import random_images
from ucdir.metrics.fidelity import prepare, psnr, rgb_to_y, ssim, ssim3d

C1, C2 = 0.01**2, 0.03**2


def _gauss(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_map(mu_x, mu_y, xx, yy, xy):  # type: ignore[no-untyped-def]
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / (
        (mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2)
    )


def numpy_psnr(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((x - y) ** 2)))


def numpy_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Per-channel Gaussian SSIM, image reflect-padded by 5 px, mean over channels and pixels."""
    w = np.outer(_gauss(), _gauss())

    def filt(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, ((0, 0), (5, 5), (5, 5)), mode="reflect")
        return np.einsum("chwij,ij->chw", sliding_window_view(padded, (11, 11), axis=(1, 2)), w)

    return float(_ssim_map(filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)).mean())


def numpy_ssim3d(x: np.ndarray, y: np.ndarray) -> float:
    """11×11×11 Gaussian over the C×H×W volume with replicated edges, mean of the SSIM map."""
    g = _gauss()
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def filt(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, 5, mode="edge")
        return np.einsum("chwijk,ijk->chw", sliding_window_view(padded, (11, 11, 11)), w)

    return float(_ssim_map(filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)).mean())


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    gt = random_images(2, 24, 29, seed=1)
    noise = 0.1 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))
    return (gt + noise).clamp(0, 1), gt


def test_psnr_matches_hand_formula(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    restored, gt = pair
    got = psnr(restored, gt)
    assert got.shape == (2,)
    for i in range(2):
        want = numpy_psnr(restored[i].double().numpy(), gt[i].double().numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-4)


def test_psnr_of_a_known_error() -> None:
    gt = torch.zeros(1, 3, 8, 8)
    assert psnr(gt + 0.1, gt).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01


def test_ssim_matches_hand_formula(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    restored, gt = pair
    got = ssim(restored, gt)
    assert got.shape == (2,)
    for i in range(2):
        want = numpy_ssim(restored[i].double().numpy(), gt[i].double().numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-4)
    assert ssim(gt, gt) == pytest.approx(torch.ones(2), abs=1e-5)


def test_ssim3d_matches_hand_formula(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    restored, gt = pair
    got = ssim3d(restored, gt)
    assert got.shape == (2,)
    for i in range(2):
        want = numpy_ssim3d(restored[i].double().numpy(), gt[i].double().numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-5)
    assert ssim3d(gt, gt) == pytest.approx(torch.ones(2), abs=1e-5)
    # The window spans the channels: a change in one channel lowers the others' scores too.
    one = gt.clone()
    one[:, 0] = restored[:, 0]
    per_channel = 1 - (1 - ssim(restored[:, :1], gt[:, :1])) / 3
    assert (ssim3d(one, gt) - per_channel).abs().min() > 1e-3


def test_y_channel_and_border_crop() -> None:
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 10, 12)
    y = rgb_to_y(rgb)
    assert y.shape == (1, 1, 10, 12)
    assert y[0, 0, 0, 0].item() == pytest.approx((16 + 65.481) / 255)
    assert rgb_to_y(torch.ones(1, 3, 2, 2)).max().item() == pytest.approx(235 / 255, abs=1e-6)
    assert prepare(rgb, "y", crop_border=2).shape == (1, 1, 6, 8)
    assert prepare(rgb, "rgb", crop_border=0).shape == (1, 3, 10, 12)
    with pytest.raises(ValueError, match="color"):
        prepare(rgb, "lab")  # type: ignore[arg-type]
