from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import write_images
from ucdir.data.images import (
    holdout_split,
    image_size,
    list_images,
    read_file_list,
    read_image,
)


def test_list_images_is_recursive_sorted_and_skips_other_files(clean_folder: Path) -> None:
    (clean_folder / ".hidden.png").write_bytes(b"")
    files = list_images(clean_folder, "data.root")
    relative = [f.relative_to(clean_folder).as_posix() for f in files]
    assert relative == sorted(relative) and len(files) == 6
    assert "notes.txt" not in relative and ".hidden.png" not in relative
    assert "sub/img_000.jpg" in relative


def test_list_images_errors_name_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*nope does not exist"):
        list_images(tmp_path / "nope", "data.root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data\.root: no images"):
        list_images(tmp_path / "empty", "data.root")


def test_holdout_split_is_fixed_and_disjoint(clean_folder: Path) -> None:
    files = list_images(clean_folder, "data.root")
    train, held = holdout_split(files, clean_folder, 2, "data.val_count")
    assert len(held) == 2 and len(train) == 4 and not set(train) & set(held)
    # Same choice from a shuffled listing: it depends on the names only.
    assert set(holdout_split(files[::-1], clean_folder, 2, "data.val_count")[1]) == set(held)
    with pytest.raises(ValueError, match=r"data\.val_count"):
        holdout_split(files, clean_folder, len(files), "data.val_count")


def test_read_file_list_resolves_names_without_extension(tmp_path: Path) -> None:
    write_images(tmp_path / "val" / "n01440764", [(16, 16)], ext=".JPEG")
    listing = tmp_path / "list.txt"
    listing.write_text("# DDRM style\nn01440764/img_000 0\n\n")
    files = read_file_list(listing, tmp_path / "val", "data.val_list", "data.val_root")
    assert files == [tmp_path / "val" / "n01440764" / "img_000.JPEG"]
    listing.write_text("n01440764/img_000 0\nn01440764/missing 1\n")
    with pytest.raises(FileNotFoundError, match=r"data\.val_list: .*line 2: 'n01440764/missing'"):
        read_file_list(listing, tmp_path / "val", "data.val_list", "data.val_root")
    with pytest.raises(FileNotFoundError, match=r"data\.val_list: file .*nolist.txt"):
        read_file_list(tmp_path / "nolist.txt", tmp_path, "data.val_list", "data.val_root")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK"])
def test_read_image_converts_8bit_modes_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    rgb.convert(mode).save(path)
    out = read_image(path, "data.root")
    assert out.shape == (5, 7, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    if mode == "RGBA":  # alpha dropped, colour kept exactly
        np.testing.assert_allclose(out * 255, np.asarray(rgb), atol=1e-3)


def test_read_image_keeps_16_bit_precision(tmp_path: Path) -> None:
    grey = (np.linspace(0, 65535, 6 * 9).reshape(6, 9)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    out = read_image(tmp_path / "grey16.png", "data.root")
    np.testing.assert_allclose(out[..., 1], grey / 65535.0, atol=1e-6)

    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 9, 3), dtype=np.uint16)
    for ext in (".png", ".tif"):
        cv2.imwrite(str(tmp_path / f"rgb16{ext}"), rgb16[..., ::-1])  # OpenCV writes BGR
        out = read_image(tmp_path / f"rgb16{ext}", "data.root")
        np.testing.assert_allclose(out, rgb16 / 65535.0, atol=1e-6)


def test_read_image_reports_unreadable_files(tmp_path: Path) -> None:
    (write_images(tmp_path, [(64, 64)])[0]).rename(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.png").write_bytes(b"this is not a png")
    for name in ("truncated.png", "garbage.png"):
        with pytest.raises(ValueError, match=rf"data\.root: cannot read image .*{name}"):
            read_image(tmp_path / name, "data.root")
    with pytest.raises(FileNotFoundError, match=r"data\.root: file .*absent.png does not exist"):
        read_image(tmp_path / "absent.png", "data.root")
    assert image_size(tmp_path / "full.png", "data.root") == (64, 64)
