"""The models shipped in the package: found by name, small, and they restore (a guard that fails
with broken weights or a broken sampler)."""

from __future__ import annotations

import json

import pytest
import torch

from ucdir.data.compression import jpeg_roundtrip
from ucdir.data.images import read_image
from ucdir.diffusion.distill import DistilledSampler
from ucdir.diffusion.sampling import RegressionSampler
from ucdir.hub import SHIPPED_DIR, UCDIR, shipped_models
from ucdir.metrics import Metrics

CHELSEA = SHIPPED_DIR.parent / "samples" / "val" / "chelsea.png"
NAMES = ("jpeg-cpu", "jpeg-cpu-regression", "jpeg-cpu-distilled")
# dB over the JPEG on the crop below: the one-call student trades PSNR for LPIPS and NIQE (on the
# 16 held-out photos +0.50 dB over the JPEG against the twin's +0.97), +0.25 dB on this crop
MARGIN = {"jpeg-cpu": 0.3, "jpeg-cpu-regression": 0.3, "jpeg-cpu-distilled": 0.2}


def _crop() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed 128×192 crop of the held-out photo and its JPEG (quality 10, real libjpeg)."""
    gt = torch.from_numpy(read_image(CHELSEA, "test")).permute(2, 0, 1)[:, 64:192, 96:288]
    return jpeg_roundtrip(gt, 10)[None], gt[None]


def _psnr(image: torch.Tensor, gt: torch.Tensor) -> float:
    scorer = Metrics(["psnr"])
    scorer.update(image, gt)
    return float(scorer.compute().aggregate["psnr"])


def test_both_models_are_shipped_with_their_cards_and_fit_in_20_mb() -> None:
    assert set(NAMES) <= set(shipped_models())
    total = 0
    for name in NAMES:
        folder = SHIPPED_DIR / name
        files = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "config.json", "README.md"} <= files, files
        total += sum(p.stat().st_size for p in folder.iterdir())
        card = (folder / "README.md").read_text()
        for needed in ("python -m ucdir.train experiment=", "python -m ucdir.evaluate", "PSNR"):
            assert needed in card, (name, needed)
    assert total <= 20 * 2**20
    config = json.loads((SHIPPED_DIR / "jpeg-cpu" / "config.json").read_text())
    assert config["denoiser"]["prediction_type"] == "sample"
    assert config["task"]["name"] == "jpeg"
    student = json.loads((SHIPPED_DIR / "jpeg-cpu-distilled" / "config.json").read_text())
    assert student["sampler"]["_target_"].endswith("DistilledSampler")
    assert student["sampler"]["steps"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_model_restores_a_held_out_crop_better_than_its_jpeg(name: str) -> None:
    lq, gt = _crop()
    model = UCDIR.load(name)
    sampler = model.default_sampler()
    if not isinstance(sampler, RegressionSampler | DistilledSampler):  # their own: one call
        from tests.diffusion.helpers import load_sampler

        sampler = load_sampler("dpmpp", steps=10)
    out = model.restore(lq, sampler, generator=torch.Generator().manual_seed(0))
    jpeg, restored = _psnr(lq, gt), _psnr(out.restored, gt)
    assert restored >= jpeg + MARGIN[name], (name, jpeg, restored)
    # the guard can fail: the model with its first layer's filters swapped is worse than the JPEG
    broken = UCDIR.load(name)
    with torch.no_grad():
        first = broken.predictor.down[0][0].weight
        first.copy_(first.flip(0))
    out = broken.restore(lq, sampler, generator=torch.Generator().manual_seed(0))
    assert _psnr(out.restored, gt) < jpeg + MARGIN[name]
