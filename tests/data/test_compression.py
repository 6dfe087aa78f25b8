import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.conftest import write_images
from ucdir.data.compression import jpeg_roundtrip
from ucdir.data.images import read_image
from ucdir.data.transforms import to_tensor


def test_jpeg_roundtrip_is_libjpeg_420(tmp_path: Path) -> None:
    gt = to_tensor(read_image(write_images(tmp_path, [(37, 29)])[0], "data.root"))
    out = jpeg_roundtrip(gt, 10)
    assert out.shape == gt.shape and out.dtype == torch.float32
    pixels = (gt * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=10, subsampling=2)  # 2 = 4:2:0
    expected = np.asarray(Image.open(buffer), dtype=np.float32) / 255
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), expected)


def test_lower_quality_loses_more() -> None:
    gt = torch.rand(3, 64, 64)
    errors = [float((jpeg_roundtrip(gt, q) - gt).abs().mean()) for q in (5, 30, 95)]
    assert errors[0] > errors[1] > errors[2]


def test_jpeg_roundtrip_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(torch.rand(3, 8, 8), 0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        jpeg_roundtrip(torch.rand(1, 8, 8), 10)
