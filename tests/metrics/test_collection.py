"""The `Metrics` object: validation, per-image rows, aggregation, options."""

from __future__ import annotations

import pytest
import torch

from tests.metrics.conftest import random_images
from ucdir.metrics import Metrics
from ucdir.metrics.fidelity import psnr


def test_rejects_unknown_metrics_and_bad_options() -> None:
    with pytest.raises(ValueError, match="subset of"):
        Metrics(["psnr", "fsim"])
    with pytest.raises(ValueError, match="subset of"):
        Metrics([])
    with pytest.raises(ValueError, match="color"):
        Metrics(["psnr"], color="lab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_missing"):
        Metrics(["psnr"], on_missing="ignore")  # type: ignore[arg-type]


def test_update_validates_shapes_and_names() -> None:
    metrics = Metrics(["psnr"])
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="2 names"):
        metrics.update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), names=["a", "b"])
    with pytest.raises(ValueError, match="no images"):
        metrics.compute()


def test_aggregate_is_the_mean_of_the_per_image_rows() -> None:
    metrics = Metrics(["ssim", "psnr"])
    gt = random_images(3, 32, 40)
    restored = (gt + 0.05).clamp(0, 1)
    metrics.update(restored[:2], gt[:2], names=["x", "y"])
    metrics.update(restored[2:], gt[2:])
    result = metrics.compute()
    assert [r["name"] for r in result.per_image] == ["x", "y", "000002"]
    assert metrics.names == ["psnr", "ssim"]  # the paper's column order
    for key in ("psnr", "ssim"):
        mean = sum(float(r[key]) for r in result.per_image) / 3
        assert result.aggregate[key] == pytest.approx(mean)
    assert result.aggregate["images"] == 3
    metrics.reset()
    metrics.update(gt[:1], gt[:1])
    assert metrics.compute().aggregate["images"] == 1


def test_quantize_clamps_and_rounds_to_8_bit() -> None:
    gt = torch.full((1, 3, 16, 16), 0.5)
    restored = gt + 0.001  # less than half an 8-bit level away: identical after rounding
    exact = Metrics(["psnr"], quantize=False)
    rounded = Metrics(["psnr"])
    for m in (exact, rounded):
        m.update(restored, gt)
    assert exact.compute().aggregate["psnr"] == pytest.approx(60.0, abs=0.01)
    assert rounded.compute().aggregate["psnr"] == float("inf")
    over = Metrics(["psnr"])
    over.update(torch.full((1, 3, 8, 8), 1.5), torch.ones(1, 3, 8, 8))
    assert over.compute().aggregate["psnr"] == float("inf")


def test_y_channel_and_crop_options_reach_psnr() -> None:
    gt = random_images(1, 40, 40)
    restored = gt.clone()
    restored[..., :4, :] = 0  # damage only a 4-px top border
    cropped = Metrics(["psnr"], crop_border=4)
    cropped.update(restored, gt)
    assert cropped.compute().aggregate["psnr"] == float("inf")
    luma = Metrics(["psnr"], color="y", quantize=False)
    restored = gt.clone()
    restored[:, 0], restored[:, 1] = gt[:, 1], gt[:, 0]  # swap R and G: luma changes
    luma.update(restored, gt)
    assert luma.compute().aggregate["psnr"] != pytest.approx(psnr(restored, gt).item())
    assert luma.protocol()["metrics"]["psnr"]["color_space"].startswith("Y")  # type: ignore[index]
