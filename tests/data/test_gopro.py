import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.data.conftest import check_batch, datamodule, one_training_step, write_images
from ucdir.data.gopro import GoProDataModule, gopro_pairs

SMALL = ("data.crop=64", "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false")


def synthetic_gopro(root: Path, frames: int = 2, size: tuple[int, int] = (48, 40)) -> Path:
    """A GOPRO_Large-shaped tree of small synthetic frames (blur, blur_gamma, sharp)."""
    for split in ("train", "test"):
        for scene in ("GOPR0001_00_00", "GOPR0002_00_00"):
            for kind in ("blur", "blur_gamma", "sharp"):
                write_images(root / split / scene / kind, [size] * frames)
    return root


@pytest.fixture
def real_gopro(tmp_path: Path, shared_data: Path) -> Path:
    """The two real shared GoPro pairs in the GOPRO_Large layout (one train, one test scene)."""
    root = tmp_path / "GOPRO_Large"
    for split, name in (("train", "Flower1"), ("test", "Istanbul1")):
        for kind in ("blur", "sharp"):
            folder = root / split / f"GOPR_{name}" / kind
            folder.mkdir(parents=True)
            (folder / "000001.png").symlink_to(shared_data / "gopro" / kind / f"{name}.png")
    return root


def test_pairs_follow_the_gopro_layout(tmp_path: Path) -> None:
    root = synthetic_gopro(tmp_path / "g")
    pairs = gopro_pairs(root, "train", "blur_gamma")
    assert len(pairs) == 4
    assert all(b.parent.name == "blur_gamma" and s.parent.name == "sharp" for b, s in pairs)
    assert all(b.name == s.name for b, s in pairs)


def test_real_pairs_train_crops_and_full_test_frames(real_gopro: Path) -> None:
    dm = datamodule("gopro", f"data.root={real_gopro}", *SMALL, "data.batch_size=1")
    assert isinstance(dm, GoProDataModule)
    dm.setup("fit")
    check_batch(next(iter(dm.train_dataloader())), (1, 3, 64, 64), (1, 3, 64, 64), 0)
    val = next(iter(dm.val_dataloader()))
    check_batch(val, (1, 3, 720, 1280), (1, 3, 720, 1280), 0)
    psnr = -10 * torch.log10(((val.lq - val.gt) ** 2).mean())
    assert 20 < float(psnr) < 30  # a real blurred/sharp pair (24.05 dB per the data README)


def test_one_training_step(tmp_path: Path) -> None:
    one_training_step(datamodule("gopro", f"data.root={synthetic_gopro(tmp_path / 'g')}", *SMALL))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*nowhere does not exist"):
        datamodule("gopro", f"data.root={tmp_path / 'nowhere'}", *SMALL).setup("fit")
    root = synthetic_gopro(tmp_path / "g")
    shutil.rmtree(root / "test")
    with pytest.raises(FileNotFoundError, match=r"data\.root: .* has no test/ folder"):
        datamodule("gopro", f"data.root={root}", *SMALL).setup("fit")
    root = synthetic_gopro(tmp_path / "h")
    (root / "train" / "GOPR0001_00_00" / "sharp" / "img_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no sharp partner .*img_001.png"):
        datamodule("gopro", f"data.root={root}", *SMALL).setup("fit")


def test_pairs_of_different_sizes_are_reported(tmp_path: Path) -> None:
    root = synthetic_gopro(tmp_path / "g")
    Image.new("RGB", (50, 40)).save(root / "test" / "GOPR0001_00_00" / "sharp" / "img_000.png")
    dm = datamodule("gopro", f"data.root={root}", *SMALL)
    dm.setup("validate")
    with pytest.raises(ValueError, match=r"data\.root: pair sizes differ: .*48x40, .*50x40"):
        next(iter(dm.val_dataloader()))
