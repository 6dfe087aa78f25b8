from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.errors import InstantiationException

from tests.data.conftest import (
    check_batch,
    compose_task,
    datamodule,
    one_training_step,
    write_images,
)
from ucdir.data.folder import CleanImageDataModule, CleanImageDataset
from ucdir.data.jpeg import JPEGDegradation

SMALL = ("data.crop=32", "data.eval_crop=32", "data.val_count=2", "data.batch_size=2",
         "data.num_workers=0", "data.pin_memory=false")  # fmt: skip


def small(root: Path, *overrides: str) -> CleanImageDataModule:
    dm = datamodule("jpeg", f"data.root={root}", *SMALL, *overrides)
    assert isinstance(dm, CleanImageDataModule) and dm.task == "jpeg"
    return dm


def test_default_root_comes_from_the_paths_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCDIR_DATA_DIR", "/datasets")
    cfg = compose_task("jpeg")
    assert cfg.data.root == "/datasets/imagenet/train"
    assert cfg.task.lq_channels == 3 and cfg.data.degradation.quality == 10


def test_batches_shapes_ranges_and_fixed_validation(clean_folder: Path) -> None:
    dm = small(clean_folder)
    dm.setup("fit")
    train, evaluation = dm.split()
    assert len(evaluation) == 2 and not set(train) & set(evaluation)
    check_batch(next(iter(dm.train_dataloader())), (2, 3, 32, 32), (2, 3, 32, 32), 0)
    first = next(iter(dm.val_dataloader()))
    check_batch(first, (2, 3, 32, 32), (2, 3, 32, 32), 0)
    again = small(clean_folder)
    again.setup("fit")
    second = next(iter(again.val_dataloader()))
    assert torch.equal(first.lq, second.lq) and torch.equal(first.gt, second.gt)
    # The lq is a real, lossy JPEG of the gt.
    assert 0 < float((first.lq - first.gt).abs().mean()) < 0.2


def test_quality_range_is_drawn_and_emitted_as_scalar(clean_folder: Path) -> None:
    dm = small(clean_folder, "task.quality=[5,95]", "task.aux_scalars=[quality]", "data.repeats=8")
    dm.setup("fit")
    qualities = torch.cat([b.scalars for b in dm.train_dataloader()])
    assert qualities.shape == (32, 1)
    assert float(qualities.min()) >= 0.05 and float(qualities.max()) <= 0.95
    assert len(qualities.unique()) > 3
    fixed = small(clean_folder, "task.aux_scalars=[quality]")
    fixed.setup("fit")
    assert torch.all(next(iter(fixed.train_dataloader())).scalars == 0.1)


def test_full_image_evaluation_uses_batch_one(clean_folder: Path) -> None:
    dm = small(clean_folder, "data.eval_crop=null")
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch.lq.shape[0] == 1 and batch.lq.shape == batch.gt.shape


def test_val_root_and_ddrm_style_list(tmp_path: Path, clean_folder: Path) -> None:
    write_images(tmp_path / "val" / "n01", [(40, 36), (50, 50)], ext=".JPEG")
    (tmp_path / "val_1k.txt").write_text("n01/img_001 7\n")
    dm = small(clean_folder, f"data.val_root={tmp_path / 'val'}",
               f"data.val_list={tmp_path / 'val_1k.txt'}")  # fmt: skip
    train, evaluation = dm.split()
    assert len(train) == 6 and evaluation == [tmp_path / "val" / "n01" / "img_001.JPEG"]


def test_global_batch_is_split_over_processes(clean_folder: Path) -> None:
    dm = small(clean_folder, "data.batch_size=4", "data.repeats=2")
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)  # type: ignore[assignment]
    dm.setup("fit")
    assert dm.batch_size_per_device == 2
    assert next(iter(dm.train_dataloader())).lq.shape[0] == 2
    dm.trainer = SimpleNamespace(world_size=3, global_rank=0)  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"data\.batch_size=4 is the global batch"):
        dm.setup("fit")


def test_clear_errors(tmp_path: Path, clean_folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*missing does not exist"):
        small(tmp_path / "missing").setup("fit")
    with pytest.raises(InstantiationException, match=r"data\.aux_scalars: .*'exposure_ratio'"):
        small(clean_folder, "task.aux_scalars=[exposure_ratio]")
    with pytest.raises(InstantiationException, match=r"task\.quality"):
        small(clean_folder, "task.quality=[5]")
    with pytest.raises(ValueError, match=r"data\.batch_size: 64 per process is more than"):
        small(clean_folder, "data.batch_size=64").setup("fit")


def test_one_training_step(clean_folder: Path) -> None:
    model = one_training_step(small(clean_folder))
    assert model.seen["train"][0].lq.shape == (2, 3, 32, 32)


def test_shared_training_photos_work_as_is(shared_data: Path) -> None:
    dm = datamodule("jpeg", f"data.root={shared_data / 'train'}", "data.num_workers=0",
                    "data.pin_memory=false")  # fmt: skip
    dm.setup("fit")
    assert len(dm.data_train) == 439 - 16  # type: ignore[arg-type]
    check_batch(next(iter(dm.train_dataloader())), (32, 3, 256, 256), (32, 3, 256, 256), 0)
    check_batch(next(iter(dm.val_dataloader())), (16, 3, 256, 256), (16, 3, 256, 256), 0)


def test_the_decoded_image_cache_gives_the_same_samples_and_skips_the_decode(
    clean_folder: Path, tmp_path: Path
) -> None:
    files = sorted(clean_folder.rglob("*.png"))
    assert files

    def dataset(cache: bool) -> CleanImageDataset:
        return CleanImageDataset(files, JPEGDegradation(), (), "crop", 32, seed=0, cache=cache)

    plain, cached = dataset(False), dataset(True)
    first = [cached[i] for i in range(len(cached))]  # fills the cache
    for i, sample in enumerate(first):
        expected = plain[i]
        assert torch.equal(sample.gt, expected.gt) and torch.equal(sample.lq, expected.lq)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for n, f in enumerate(files):  # the files are gone: the cache samples from memory alone
        f.rename(hidden / f"{n}.png")
    try:
        with pytest.raises(FileNotFoundError):
            plain[0]
        again = [cached[i] for i in range(len(cached))]
        assert all(torch.equal(a.lq, b.lq) for a, b in zip(first, again, strict=True))
    finally:
        for n, f in enumerate(files):
            (hidden / f"{n}.png").rename(f)
    assert small(clean_folder, "data.cache=true").cache is True
