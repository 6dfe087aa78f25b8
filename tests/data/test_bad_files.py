"""Decompression bombs, oversized raw files and unreadable raw files: refused with a clear error
naming `max_pixels`, and never the end of a batch."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_files import bomb_png
from tests.conftest import compose
from tests.data.test_sid import KDC, fake_sid
from ucdir.data.images import ImageTooLargeError, image_size, list_images, read_image
from ucdir.data.raw import read_packed
from ucdir.data.sid_cache import CacheJob, build_cache
from ucdir.prepare import prepare


def test_a_png_claiming_100000x100000_pixels_is_a_clear_error(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    for read in (read_image, image_size):
        with pytest.raises(ImageTooLargeError, match=r"input: .*bomb\.png .*max_pixels="):
            read(bomb, "input")
    assert issubclass(ImageTooLargeError, ValueError)  # what every reader treats as unreadable


def test_max_pixels_is_the_limit_not_pillows(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    with pytest.raises(ImageTooLargeError, match=r"600 pixels, the limit is max_pixels=599"):
        read_image(path, "input", max_pixels=599)
    with pytest.raises(ImageTooLargeError, match="max_pixels=100"):
        image_size(path, "input", max_pixels=100)  # > 2 × the limit: Pillow's own check fires
    assert read_image(path, "input", max_pixels=600).shape == (20, 30, 3)
    default = Image.MAX_IMAGE_PIXELS
    read_image(path, "input", max_pixels=10**12)
    assert default == Image.MAX_IMAGE_PIXELS  # Pillow's global limit is left as it was


def test_list_images_flat_and_by_extension(tmp_path: Path) -> None:
    for name in ("a.png", "b.ppm", "c.ARW", "sub/d.png", ".e.png.partial-x1"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, "k")]
    assert names == ["a.png", "b.ppm", "sub/d.png"]
    flat = list_images(tmp_path, "k", recursive=False)
    assert [p.name for p in flat] == ["a.png", "b.ppm"]
    assert [p.name for p in list_images(tmp_path, "k", extensions=(".arw",))] == ["c.ARW"]


def test_a_raw_sensor_over_max_pixels_is_refused_before_unpacking(shared_data: Path) -> None:
    kdc = shared_data / "raw" / KDC  # 512 x 768 sensor
    with pytest.raises(ImageTooLargeError, match=r"393,216 pixels, the limit is max_pixels=1,000"):
        read_packed(kdc, "input", max_pixels=1000)
    assert read_packed(kdc, "input").shape == (256, 384, 4)


def test_a_broken_raw_file_does_not_stop_the_others(tmp_path: Path, shared_data: Path) -> None:
    broken = tmp_path / "broken.KDC"
    broken.write_bytes(b"not a raw file at all" * 10)
    jobs = [
        CacheJob(broken, tmp_path / "cache" / "broken.npy", "packed"),
        CacheJob(shared_data / "raw" / KDC, tmp_path / "cache" / "good.npy", "packed"),
    ]
    done: list[Path] = []
    with pytest.raises(ValueError, match=r"1 of 2 raw files could not be decoded(.|\n)*broken"):
        build_cache(jobs, on_done=lambda job: done.append(job.target))
    assert done == [tmp_path / "cache" / "good.npy"] and (tmp_path / "cache" / "good.npy").is_file()
    assert not (tmp_path / "cache" / "broken.npy").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_prepare_reports_files_over_max_pixels(tmp_path: Path, shared_data: Path) -> None:
    root = fake_sid(tmp_path / "SID", shared_data / "raw", {"train": [("00001", "0.1", KDC)]})
    cache = tmp_path / "cache"
    overrides = [f"data.root={root}", f"data.cache_dir={cache}", "workers=1", "max_pixels=1000"]
    cfg = compose("prepare", [*overrides, "splits=[train]"])
    with pytest.raises(ValueError, match=r"2 of 2 raw files(.|\n)*max_pixels=1,000"):
        prepare(cfg)
