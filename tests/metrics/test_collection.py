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
    assert rounded.compute().aggregate["psnr"] == 100.0
    over = Metrics(["psnr"])
    over.update(torch.full((1, 3, 8, 8), 1.5), torch.ones(1, 3, 8, 8))
    assert over.compute().aggregate["psnr"] == 100.0


def test_y_channel_and_crop_options_reach_psnr() -> None:
    gt = random_images(1, 40, 40)
    restored = gt.clone()
    restored[..., :4, :] = 0  # damage only a 4-px top border
    cropped = Metrics(["psnr"], crop_border=4)
    cropped.update(restored, gt)
    assert cropped.compute().aggregate["psnr"] == 100.0
    luma = Metrics(["psnr"], color="y", quantize=False)
    restored = gt.clone()
    restored[:, 0], restored[:, 1] = gt[:, 1], gt[:, 0]  # swap R and G: luma changes
    luma.update(restored, gt)
    assert luma.compute().aggregate["psnr"] != pytest.approx(psnr(restored, gt).item())
    assert luma.protocol()["metrics"]["psnr"]["color_space"].startswith("Y")  # type: ignore[index]


def test_small_images_skip_niqe_and_fid_kid_with_a_note_not_an_abort() -> None:
    """64² images: no 256² patch for FID/KID and fewer than two NIQE blocks; PSNR/SSIM/LPIPS
    are still reported (a stand-in feature network makes FID/KID buildable offline)."""
    feature = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    metrics = Metrics(["niqe", "fid", "kid", "psnr", "ssim"], feature=feature)
    gt = random_images(2, 64, 64)
    metrics.update((gt + 0.02).clamp(0, 1), gt)
    result = metrics.compute()
    assert {"psnr", "ssim"} <= result.aggregate.keys()
    assert not {"niqe", "fid", "kid"} & result.aggregate.keys()
    assert "2 of 2 images are too small" in result.skipped["niqe"]
    assert "at least 2 patches" in result.skipped["fid"] and result.skipped["kid"]
    assert all(r["niqe"] != r["niqe"] for r in result.per_image)  # NaN per image


def test_niqe_is_left_out_when_only_some_images_can_be_scored() -> None:
    metrics = Metrics(["niqe", "psnr"])
    metrics.update(random_images(1, 200, 200), random_images(1, 200, 200, seed=1))
    metrics.update(random_images(1, 64, 64), random_images(1, 64, 64, seed=1))
    result = metrics.compute()
    assert "niqe" not in result.aggregate and "1 of 2 images" in result.skipped["niqe"]
    assert result.per_image[0]["niqe"] == pytest.approx(float(result.per_image[0]["niqe"]))
