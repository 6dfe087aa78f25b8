"""NIQE reproduces the paper protocol's reference values (shared/data/niqe/REFERENCE.md)."""

from __future__ import annotations

import hashlib
import io
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.metrics.conftest import random_images
from ucdir.metrics.niqe import PRISTINE_PARAMS, niqe, niqe_luma, pristine_model, rgb_to_luma

NPZ_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
TOLERANCE = 0.01


def _reference(shared: Path) -> dict[str, tuple[float, float]]:
    """image -> (NIQE clean, NIQE after Pillow JPEG quality 10), parsed from REFERENCE.md."""
    text = (shared / "niqe" / "REFERENCE.md").read_text()
    rows = re.findall(r"^\| (\S+\.png) \| \d+×\d+ \| ([\d.]+) \| ([\d.]+) \|$", text, re.M)
    return {name: (float(clean), float(jpeg)) for name, clean, jpeg in rows}


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1) / 255.0


def _jpeg10(image: Image.Image) -> Image.Image:
    """Pillow JPEG at quality 10 (default 4:2:0 subsampling), decoded again, as REFERENCE.md."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=10)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def test_packaged_pristine_model_is_basicsr_file() -> None:
    files = resources.files("ucdir")
    data = (files / PRISTINE_PARAMS).read_bytes()
    assert hashlib.sha256(data).hexdigest() == NPZ_SHA256
    notice = (files / "assets/niqe/NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "BasicSR" in notice
    model = pristine_model()
    assert model.mu.shape == (36,) and model.cov.shape == (36, 36) and model.window.shape == (7, 7)


def test_niqe_matches_every_reference_value(shared_data: Path) -> None:
    reference = _reference(shared_data)
    assert len(reference) == 14, "REFERENCE.md lists 14 images"
    errors = {}
    for name, (clean, jpeg) in reference.items():
        image = Image.open(shared_data / "natural" / name)
        errors[name] = (
            abs(niqe(_tensor(image)) - clean),
            abs(niqe(_tensor(_jpeg10(image))) - jpeg),
        )
    worst = max(max(e) for e in errors.values())
    assert worst <= TOLERANCE, {k: v for k, v in errors.items() if max(v) > TOLERANCE}


def test_luma_is_matlab_bt601() -> None:
    rgb = np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    y = rgb_to_luma(rgb)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [235.0, 16.0, 16 + 65.481], atol=1e-4)


def test_niqe_rejects_images_with_fewer_than_two_blocks() -> None:
    with pytest.raises(ValueError, match="at least two"):
        niqe_luma(np.full((96, 96), 128.0))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        niqe(torch.rand(1, 3, 200, 200))


def test_small_images_use_blocks_of_their_shorter_side() -> None:
    # 64×200 gives three 64² blocks: scored, not rejected.
    assert np.isfinite(niqe(random_images(1, 64, 200)[0]))
