"""Bad training data found before the first step (`data.check`), and skipped or named during
training (`data.on_error`)."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import compose
from tests.data.conftest import datamodule, write_images
from ucdir.data.check import BadDataError, check_files, file_problem, image_problem
from ucdir.data.folder import CleanImageDataset
from ucdir.data.jpeg import JPEGDegradation
from ucdir.train import train


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def cut_idat_png(path: Path, width: int = 48, height: int = 40) -> Path:
    """A PNG whose chunks are all whole with correct CRCs, but whose compressed pixel stream
    (IDAT) stops halfway: `verify()` passes, decoding fails."""
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row
    stream = zlib.compress(raw)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", stream[: len(stream) // 2])
        + png_chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """6 good PNGs, a PNG cut in the middle and a text file named .png."""
    root = tmp_path / "clean"
    good = write_images(root, [(80, 72)] * 6)
    data = good[0].read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("this is not an image")
    return root


def jpeg(root: Path, *extra: str):  # type: ignore[no-untyped-def]
    return datamodule(
        "jpeg",
        f"data.root={root}",
        "data.crop=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.val_count=1",
        *extra,
    )


def test_setup_lists_every_bad_file_in_one_error(bad_folder: Path) -> None:
    dm = jpeg(bad_folder, "data.val_root=" + str(bad_folder))
    with pytest.raises(BadDataError) as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert "2 of the 8 training files" in message
    assert f"{bad_folder / 'truncated.png'}: corrupt or truncated" in message
    assert f"{bad_folder / 'notes.png'}: not an image" in message
    assert "data.check=false" in message and "data.on_error=skip" in message


def test_skip_leaves_the_bad_files_out(bad_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = jpeg(bad_folder, "data.val_root=" + str(bad_folder), "data.on_error=skip")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    names = {f.name for f in dm.data_train.files}  # type: ignore[union-attr]
    assert len(names) == 6 and not names & {"truncated.png", "notes.png"}
    assert "notes.png" in caplog.text and "2 training items left out" in caplog.text
    assert len(list(dm.train_dataloader())) == 3


def test_check_false_skips_the_check(bad_folder: Path) -> None:
    dm = jpeg(bad_folder, "data.val_root=" + str(bad_folder), "data.check=false")
    dm.setup("fit")
    assert len(dm.data_train) == 8  # type: ignore[arg-type]


def test_a_file_that_passes_the_check_but_fails_to_decode(tmp_path: Path) -> None:
    files = write_images(tmp_path, [(64, 64)] * 3)
    broken = cut_idat_png(tmp_path / "img_001.png")  # the second of three
    assert image_problem(broken) is None  # the structure is intact

    def dataset(on_error: str) -> CleanImageDataset:
        return CleanImageDataset(
            files,
            JPEGDegradation(),
            (),
            "crop",
            32,
            None,
            on_error=on_error,  # type: ignore[arg-type]
        )

    with pytest.raises(ValueError, match=r"cannot read image .*img_001\.png.*on_error=skip"):
        dataset("raise")[1]
    skipping = dataset("skip")
    sample = skipping[1]  # reads the next position instead, with key 1's randomness
    assert skipping.skipped.total == 1
    expected = CleanImageDataset([files[2]], JPEGDegradation(), (), "crop", 32, None)[1]
    assert torch.equal(sample.gt, expected.gt) and torch.equal(sample.lq, expected.lq)
    again = dataset("skip")[1]
    assert torch.equal(sample.gt, again.gt) and torch.equal(sample.lq, again.lq)
    assert skipping[0] is not None and skipping.skipped.total == 1  # a good file: no skip
    skipping[4]  # position 1 again (4 % 3): skipped without decoding it twice
    assert skipping.skipped.total == 2


def test_the_skip_count_reaches_the_main_process(tmp_path: Path) -> None:
    write_images(tmp_path / "clean", [(64, 64)] * 4)
    write_images(tmp_path / "val", [(64, 64)])
    cut_idat_png(tmp_path / "clean" / "img_002.png")
    dm = jpeg(tmp_path / "clean", "data.on_error=skip", f"data.val_root={tmp_path / 'val'}")
    dm.setup("fit")  # the check cannot see this one
    assert len(dm.data_train) == 4  # type: ignore[arg-type]
    dm.num_workers = 1
    assert sum(len(b.lq) for b in dm.train_dataloader()) == 4
    assert dm.data_train.skipped.total == 1  # type: ignore[union-attr]  # counted in the worker


def test_arrays_and_shared_files_are_checked_once(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((8, 8, 3), np.uint16))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-10])
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert file_problem(good) is None and file_problem(image) is None
    assert "not a complete .npy array" in str(file_problem(cut))
    assert file_problem(tmp_path / "gone.npy") == "does not exist"
    result = check_files([(image, good), (cut, good), (image, cut)], workers=2)
    assert result.bad_items == [1, 2] and result.checked == 3
    assert [bad.path for bad in result.bad_files] == [cut]


def test_training_stops_before_the_first_step(tmp_path: Path) -> None:
    root = tmp_path / "clean"
    write_images(root, [(80, 72)] * 6)
    write_images(tmp_path / "val", [(80, 72)])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cfg = compose(
        "train",
        [
            "task=jpeg",
            f"data.root={root}",
            "debug=fdr",
            f"data.val_root={tmp_path / 'val'}",
            f"paths.output_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(BadDataError, match=r"corrupt\.png: .*\n.*data\.check=false"):
        train(cfg)
    assert not list((tmp_path / "run").rglob("*.ckpt"))
