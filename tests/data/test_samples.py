from pathlib import Path

import pytest
import torch

from tests.data.conftest import check_batch, datamodule, one_training_step, write_images
from ucdir.data.images import list_images
from ucdir.data.samples import SAMPLES_DIR, SamplesDataModule


def test_embedded_samples_are_small_documented_and_split() -> None:
    train = list_images(SAMPLES_DIR / "train", "data.root")
    val = list_images(SAMPLES_DIR / "val", "data.root")
    assert 5 <= len(train) + len(val) <= 8 and len(val) == 1
    total = sum(f.stat().st_size for f in SAMPLES_DIR.rglob("*") if f.is_file())
    assert total < 2_000_000
    note = (SAMPLES_DIR / "README.md").read_text()
    for f in train + val:
        assert f.relative_to(SAMPLES_DIR).as_posix() in note, f"{f.name} lacks a licence note"


def test_default_task_needs_no_dataset() -> None:
    dm = datamodule("samples")
    assert isinstance(dm, SamplesDataModule)
    dm.setup("fit")
    check_batch(next(iter(dm.train_dataloader())), (4, 3, 128, 128), (4, 3, 128, 128), 0)
    val = next(iter(dm.val_dataloader()))
    check_batch(val, (1, 3, 256, 384), (1, 3, 256, 384), 0)
    again = datamodule("samples")
    again.setup("validate")
    assert torch.equal(next(iter(again.val_dataloader())).lq, val.lq)


def test_one_training_step_with_quality_scalar() -> None:
    model = one_training_step(datamodule("samples", "task.aux_scalars=[quality]"))
    assert torch.all(model.seen["train"][0].scalars == 0.1)


def test_other_root_with_the_same_layout(tmp_path: Path) -> None:
    write_images(tmp_path / "train", [(40, 40)] * 4)
    write_images(tmp_path / "val", [(30, 20)])
    dm = datamodule("samples", f"data.root={tmp_path}", "data.crop=16")
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).lq.shape == (4, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*train does not exist"):
        datamodule("samples", f"data.root={tmp_path / 'none'}").setup("fit")
