from pathlib import Path

import torch
from hydra.utils import instantiate

from tests.data.conftest import check_batch, compose_task, datamodule, one_training_step
from ucdir.data.degradations import SecondOrderDegradation
from ucdir.data.folder import CleanImageDataModule

SMALL = ("data.crop=32", "data.eval_crop=32", "data.val_count=2", "data.batch_size=2",
         "data.num_workers=0", "data.pin_memory=false")  # fmt: skip


def test_config_holds_the_real_esrgan_defaults() -> None:
    cfg = compose_task("blind")
    assert instantiate(cfg.data.degradation) == SecondOrderDegradation()


def test_validation_degradations_are_fixed_training_ones_new_every_epoch(
    clean_folder: Path,
) -> None:
    scalars = "task.aux_scalars=[blur_sigma,scale,noise_sigma,quality]"
    dm = datamodule("blind", f"data.root={clean_folder}", *SMALL, scalars)
    assert isinstance(dm, CleanImageDataModule) and dm.task == "blind"
    assert isinstance(dm.degradation, SecondOrderDegradation)
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))
    check_batch(val, (2, 3, 32, 32), (2, 3, 32, 32), 4)
    other = datamodule("blind", f"data.root={clean_folder}", *SMALL, scalars)
    other.setup("validate")
    again = next(iter(other.val_dataloader()))
    assert torch.equal(val.lq, again.lq) and torch.equal(val.scalars, again.scalars)
    train = dm.data_train
    assert train is not None
    # a training key (ucdir.data.order) fixes its sample; the same image in another epoch (key +
    # size x stream) gets a new crop and degradation
    first, same, later = train[0], train[0], train[len(train) * 7]
    assert torch.equal(first.lq, same.lq) and torch.equal(first.gt, same.gt)
    assert not torch.equal(first.lq, later.lq)


def test_one_training_step(clean_folder: Path) -> None:
    one_training_step(datamodule("blind", f"data.root={clean_folder}", *SMALL))
