"""Patch extraction and FID/KID plumbing with a tiny stand-in feature extractor (no Inception)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tests.metrics.conftest import random_images
from ucdir.metrics import Metrics
from ucdir.metrics.fid import PatchDistances, extract_patches


class ColourStats(nn.Module):
    """Stand-in extractor: per-channel mean, std and mean of squares of each image (9 features)."""

    num_features = 9

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), (x**2).mean((2, 3))], dim=1)


def test_gopro_frame_gives_ten_patches() -> None:
    frames = torch.rand(2, 3, 720, 1280)
    patches = extract_patches(frames, 256)
    assert patches.shape == (20, 3, 256, 256)
    # Top-left crop, row-major: patch 6 of frame 0 is row 1, column 1.
    assert torch.equal(patches[6], frames[0, :, 256:512, 256:512])
    assert torch.equal(patches[14], frames[1, :, 0:256, 1024:1280])


def test_sid_image_gives_forty_patches_and_small_images_none() -> None:
    assert extract_patches(torch.zeros(1, 3, 1416, 2120)).shape[0] == 40
    assert extract_patches(torch.zeros(1, 3, 255, 1000)).shape[0] == 0


def _distances(**kwargs: object) -> PatchDistances:
    return PatchDistances(ColourStats(), patch_size=64, kid_subsets=20, **kwargs)  # type: ignore[arg-type]


def test_identical_sets_have_zero_distance() -> None:
    images = random_images(4, 128, 192)  # 4 × 2 × 3 = 24 patches of 64²
    dist = _distances()
    dist.update(images, images)
    out = dist.compute()
    assert out["patches"] == 24
    assert out["fid"] == pytest.approx(0.0, abs=1e-3)
    assert out["kid"] == pytest.approx(0.0, abs=1e-2)


def test_shifted_sets_are_farther_and_kid_is_scaled() -> None:
    gt = random_images(4, 128, 192, seed=0)
    near, far = (gt + 0.02).clamp(0, 1), (gt * 0.5 + 0.4).clamp(0, 1)
    scores = []
    for restored in (near, far):
        dist = _distances()
        dist.update(restored, gt)
        scores.append(dist.compute())
    assert 1e-4 < scores[0]["fid"] < scores[1]["fid"]
    assert scores[0]["kid"] < scores[1]["kid"]
    # ×10³: the raw KID of this shift is far below 1, the reported one is not.
    assert scores[1]["kid"] > 1.0


def test_features_are_computed_once_per_patch_batch() -> None:
    feature = ColourStats()
    dist = PatchDistances(feature, patch_size=64, chunk=64)
    calls = feature.calls
    dist.update(random_images(1, 128, 128), random_images(1, 128, 128, seed=1))
    assert feature.calls - calls == 2  # one restored batch, one ground-truth batch, FID and KID


def test_kid_is_reproducible_and_leaves_global_rng_alone() -> None:
    gt, restored = random_images(3, 128, 128, seed=3), random_images(3, 128, 128, seed=4)
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    values = []
    for _ in range(2):
        dist = _distances(kid_subset_size=5)
        dist.update(restored, gt)
        torch.manual_seed(123)
        values.append(dist.compute()["kid"])
        assert torch.equal(torch.rand(1), expected_draw)
    assert values[0] == values[1]


def test_too_few_patches_is_a_clear_error() -> None:
    dist = _distances()
    dist.update(random_images(1, 60, 60), random_images(1, 60, 60))
    with pytest.raises(ValueError, match="at least 2 patches"):
        dist.compute()


def test_metrics_object_reports_fid_and_kid_with_injected_feature() -> None:
    metrics = Metrics(["psnr", "fid", "kid"], feature=ColourStats(), patch_size=64, kid_subsets=10)
    gt = random_images(2, 128, 128)
    metrics.update(gt, gt, names=["a", "b"])
    result = metrics.compute()
    assert result.aggregate["fid"] == pytest.approx(0.0, abs=1e-3)
    assert result.aggregate["patches"] == 8
    assert {"fid", "kid", "kid_std"} <= result.aggregate.keys()
    assert metrics.protocol()["metrics"]["kid"]["scale"] == 1000.0  # type: ignore[index]
    assert [r["name"] for r in result.per_image] == ["a", "b"]
