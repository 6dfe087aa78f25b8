"""`evaluate mode=score` reads folders as training does (`ucdir.data.images`): the same
extensions, hidden files skipped, and a decompression bomb is an error naming `max_pixels`."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_files import bomb_png
from tests.conftest import compose
from ucdir.evaluate import pair_images, run


def _png(path: Path, h: int = 8, w: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(path)
    return path


def test_pairs_every_training_extension_and_skips_hidden_files(tmp_path: Path) -> None:
    restored, gt = tmp_path / "restored", tmp_path / "gt"
    restored.mkdir()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(restored / "x.ppm")
    _png(gt / "x.png")
    (restored / ".y.png.partial-k2j3").write_bytes(b"an interrupted restore's file")
    assert [name for name, _, _ in pair_images(restored, gt)] == ["x"]


def test_a_bomb_is_listed_with_every_other_problem(tmp_path: Path) -> None:
    restored, gt = tmp_path / "restored", tmp_path / "gt"
    bomb_png(restored / "a.png")
    _png(gt / "a.png")
    _png(restored / "b.png")
    _png(gt / "b.png", w=9)
    _png(restored / "c.png")
    _png(gt / "c.png")
    with pytest.raises(ValueError) as info:
        pair_images(restored, gt)
    message = str(info.value)
    assert "a.png claims over" in message and "max_pixels=" in message
    assert "size mismatch for b: restored 8×8, gt 9×8" in message


def test_max_pixels_is_a_config_key(tmp_path: Path) -> None:
    _png(tmp_path / "restored" / "a.png")
    _png(tmp_path / "gt" / "a.png")
    folders = [f"restored={tmp_path / 'restored'}", f"gt={tmp_path / 'gt'}"]
    cfg = compose("eval", [*folders, "metrics=[psnr]", "max_pixels=63"])
    with pytest.raises(ValueError, match=r"64 pixels, the limit is max_pixels=63"):
        run(cfg, tmp_path / "out")
