"""`data.crops_per_image=k`: one decode gives k training samples, deterministically, and k=1
gives exactly the samples of one crop per decode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import ucdir.data.folder
import ucdir.data.paired
from tests.data.conftest import datamodule, write_images
from tests.data.test_gopro import synthetic_gopro
from ucdir.data.folder import CleanImageDataset
from ucdir.data.images import read_image
from ucdir.data.jpeg import JPEGDegradation
from ucdir.data.seeding import sample_generator
from ucdir.data.transforms import random_crop, random_hflip, to_tensor
from ucdir.types import PairBatch


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "clean", [(80, 72), (96, 64), (72, 88), (64, 64), (90, 70)] * 2)
    return tmp_path / "clean"


def count_reads(monkeypatch: pytest.MonkeyPatch, module: object) -> list[Path]:
    """Records every `read_image` call of `module` (the decodes)."""
    calls: list[Path] = []

    def counting(path: Path, key: str) -> np.ndarray:
        calls.append(Path(path))
        return read_image(path, key)

    monkeypatch.setattr(module, "read_image", counting)
    return calls


def jpeg(root: Path, k: int, *extra: str):
    return datamodule(
        "jpeg",
        f"data.root={root}",
        "data.crop=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.val_count=2",
        f"data.crops_per_image={k}",
        *extra,
    )


def samples_per_decode(dm, calls: list[Path]) -> float:  # type: ignore[no-untyped-def]
    dm.setup("fit")
    calls.clear()
    batches = list(dm.train_dataloader())
    assert batches and all(b.lq.shape == (8, 3, 32, 32) for b in batches)
    return sum(len(b.lq) for b in batches) / len(calls)


def test_four_crops_per_image_decode_four_times_less(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_reads(monkeypatch, ucdir.data.folder)
    assert samples_per_decode(jpeg(folder, 1, "data.repeats=4"), calls) == 1.0
    assert samples_per_decode(jpeg(folder, 4, "data.repeats=4"), calls) == 4.0


def test_each_image_of_a_batch_gives_k_adjacent_crops(folder: Path) -> None:
    dm = jpeg(folder, 4, "data.repeats=2")
    dm.setup("fit")
    assert len(dm.data_train) == 16  # type: ignore[arg-type]  # 8 images × 2: the visits
    loader = dm.train_dataloader()
    assert loader.batch_size == 2 and len(loader) == 8  # 2 images × 4 crops per batch
    visits = dm.data_train.visit(5)  # type: ignore[union-attr]
    assert len(visits) == 4
    assert not torch.equal(visits[0].gt, visits[1].gt)  # different crops of one image


def dataset(files: list[Path], k: int, cache: bool = False) -> CleanImageDataset:
    return CleanImageDataset(
        files, JPEGDegradation(5, 95), ("quality",), "crop", 32, None, 0, "data.root", 3, cache, k
    )


def reference(files: list[Path], key: int) -> PairBatch:
    """The training sample of `key` as one crop per decode computed it before k existed."""
    generator = sample_generator(key, None, 0)
    gt = to_tensor(read_image(files[key % len(files)], "data.root"))
    (gt,) = random_hflip(generator, random_crop(gt, 32, generator))
    lq, values = JPEGDegradation(5, 95)(gt, generator)
    return PairBatch(lq, gt, torch.tensor([values["quality"]]))


def same(a: PairBatch, b: PairBatch) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


KEYS = [0, 7, 29, 3 + 30 * 12345, 30 * 2**31 + 11]  # positions and later epochs' keys


def test_one_crop_per_image_is_todays_sample_and_the_first_of_k(folder: Path) -> None:
    files = sorted(folder.glob("*.png"))
    one, four = dataset(files, 1), dataset(files, 4)
    for key in KEYS:
        expected = reference(files, key)
        assert same(one[key], expected)
        assert same(one.__getitems__([key])[0], expected)
        assert same(four.visit(key)[0], expected)


@pytest.mark.parametrize("cache", [False, True])
def test_the_same_keys_give_the_same_samples(folder: Path, cache: bool) -> None:
    files = sorted(folder.glob("*.png"))
    first = dataset(files, 4, cache).__getitems__(KEYS)
    second = dataset(files, 4).__getitems__(list(reversed(KEYS)))
    assert len(first) == 4 * len(KEYS)
    for i, key in enumerate(KEYS):
        j = len(KEYS) - 1 - i
        assert all(same(first[4 * i + c], second[4 * j + c]) for c in range(4)), key


def batches(dm, workers: int) -> list[PairBatch]:  # type: ignore[no-untyped-def]
    dm.num_workers = workers
    return list(dm.train_dataloader())


def test_the_stream_is_the_same_with_any_number_of_workers(folder: Path) -> None:
    dm = jpeg(folder, 4)
    dm.setup("fit")
    alone, with_workers = batches(dm, 0), batches(dm, 2)
    assert len(alone) == len(with_workers) == 4
    assert all(same(a, b) for a, b in zip(alone, with_workers, strict=True))


def test_clear_errors(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"8 per process is not a multiple of .*=3"):
        jpeg(folder, 3).setup("fit")
    with pytest.raises(ValueError, match=r"data\.crops_per_image must be positive"):
        dataset(sorted(folder.glob("*.png")), 0)
    with pytest.raises(ValueError, match=r"geometry 'square' gives one sample per image"):
        CleanImageDataset([], JPEGDegradation(), (), "square", 32, 0, crops_per_image=2)
    with pytest.raises(ValueError, match=r"4 images per batch per process .* more than the 2"):
        datamodule(
            "samples",
            f"data.root={make_samples(folder.parent)}",
            "data.repeats=1",
            "data.batch_size=8",
            "data.crops_per_image=2",
        ).setup("fit")


def make_samples(tmp: Path) -> Path:
    write_images(tmp / "samples" / "train", [(64, 64)] * 2)
    write_images(tmp / "samples" / "val", [(64, 64)])
    return tmp / "samples"


@pytest.mark.parametrize(
    ("task", "build"),
    [("samples", make_samples), ("gopro", lambda tmp: synthetic_gopro(tmp / "g", 4, (72, 64)))],
)
def test_other_tasks_take_the_knob(
    task: str, build: Callable[[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = ucdir.data.paired if task == "gopro" else ucdir.data.folder
    calls = count_reads(monkeypatch, module)
    dm = datamodule(
        task,
        f"data.root={build(tmp_path)}",
        "data.crop=32",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.crops_per_image=2",
    )
    dm.setup("fit")
    calls.clear()
    batch = next(iter(dm.train_dataloader()))
    assert batch.lq.shape == (4, 3, 32, 32)
    reads_per_visit = 2 if task == "gopro" else 1  # blurred and sharp frames
    assert len(calls) == 2 * reads_per_visit
