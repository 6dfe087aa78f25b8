"""`task=paired`: a folder of inputs and a folder of targets, paired by name; gopro shares it."""

from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from PIL import Image

from tests.commands import run_module
from tests.data.conftest import check_batch, datamodule, one_training_step, write_images
from tests.data.test_gopro import synthetic_gopro
from ucdir.data.paired import PairedImageDataModule, folder_pairs

SMALL = ("data.crop=32", "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false")


def pair_folders(
    root: Path, names: list[str], size: tuple[int, int] = (48, 40)
) -> tuple[Path, Path]:
    """`root/lq/<name>.jpg` (a real JPEG of the target) and `root/gt/<name>.png`."""
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        for kind, ext in (("gt", ".png"), ("lq", ".jpg")):
            path = root / kind / f"{name}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, **({"quality": 10} if ext == ".jpg" else {}))
    return root / "lq", root / "gt"


def paired(lq: Path, gt: Path, *overrides: str) -> PairedImageDataModule:
    dm = datamodule("paired", f"data.lq={lq}", f"data.gt={gt}", *SMALL, *overrides)
    assert isinstance(dm, PairedImageDataModule) and dm.task == "paired"
    return dm


def test_files_pair_by_name_across_extensions_and_sub_folders(tmp_path: Path) -> None:
    lq, gt = pair_folders(tmp_path, ["b", "a", "scene/c"])
    pairs = folder_pairs(lq, gt, "data.lq", "data.gt")
    assert [(p.relative_to(lq).as_posix(), q.relative_to(gt).as_posix()) for p, q in pairs] == [
        ("a.jpg", "a.png"),
        ("b.jpg", "b.png"),
        ("scene/c.jpg", "scene/c.png"),
    ]


def test_held_out_validation_is_fixed_and_leaves_training_and_test_is_every_pair(
    tmp_path: Path,
) -> None:
    lq, gt = pair_folders(tmp_path, [f"{i:03d}" for i in range(6)])
    dm = paired(lq, gt, "data.val_count=2")
    dm.setup("fit")
    train, val = dm.pairs("train"), dm.pairs("val")
    assert len(train) == 4 and len(val) == 2 and not set(train) & set(val)
    assert paired(lq, gt, "data.val_count=2").pairs("val") == val  # the same on every run
    assert len(dm.pairs("test")) == 6  # evaluate scores every pair
    check_batch(next(iter(dm.train_dataloader())), (2, 3, 32, 32), (2, 3, 32, 32), 0)
    full = next(iter(dm.val_dataloader()))
    check_batch(full, (1, 3, 40, 48), (1, 3, 40, 48), 0)
    assert 0 < float((full.lq - full.gt).abs().mean()) < 0.5  # a real JPEG of the target


def test_validation_and_test_folders(tmp_path: Path) -> None:
    lq, gt = pair_folders(tmp_path / "train", ["a", "b", "c"])
    val_lq, val_gt = pair_folders(tmp_path / "val", ["v"])
    test_lq, test_gt = pair_folders(tmp_path / "test", ["t1", "t2"])
    dm = paired(lq, gt, f"data.val_lq={val_lq}", f"data.val_gt={val_gt}",
                f"data.test_lq={test_lq}", f"data.test_gt={test_gt}")  # fmt: skip
    assert len(dm.pairs("train")) == 3
    assert [p.stem for p, _ in dm.pairs("val")] == ["v"]
    assert [p.stem for p, _ in dm.pairs("test")] == ["t1", "t2"]
    dm.setup("test")
    assert len(list(dm.test_dataloader())) == 2


def test_one_training_step(tmp_path: Path) -> None:
    lq, gt = pair_folders(tmp_path, [f"{i}" for i in range(5)])
    model = one_training_step(paired(lq, gt, "data.val_count=1"))
    assert model.seen["train"][0].lq.shape == (2, 3, 32, 32)


def test_gopro_is_the_paired_source_with_its_layout(tmp_path: Path) -> None:
    root = synthetic_gopro(tmp_path / "g")
    dm = datamodule("gopro", f"data.root={root}", *SMALL)
    assert isinstance(dm, PairedImageDataModule) and dm.task == "gopro"
    assert len(dm.pairs("train")) == 4 and dm.pairs("val") == dm.pairs("test")


def test_clear_errors(tmp_path: Path) -> None:
    lq, gt = pair_folders(tmp_path, ["a", "b", "c", "d"])
    (gt / "d.png").unlink()
    with pytest.raises(ValueError, match=r"data\.gt: 1 of the 4 inputs .* have no target .*\(d\)"):
        paired(lq, gt).setup("test")
    Image.new("RGB", (8, 8)).save(lq / "a.png")
    with pytest.raises(ValueError, match=r"data\.lq: two images .* have the name 'a'"):
        paired(lq, gt).setup("test")
    (lq / "a.png").unlink()
    (lq / "d.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"data\.lq: folder .*nowhere does not exist"):
        paired(tmp_path / "nowhere", gt).setup("test")
    with pytest.raises(InstantiationException, match=r"data\.val_lq and data\.val_gt go together"):
        paired(lq, gt, f"data.val_lq={lq}")
    with pytest.raises(ValueError, match=r"data\.val_count=9 must hold out between 1 and"):
        paired(lq, gt, "data.val_count=9").setup("fit")
    with pytest.raises(Exception, match=r"data\.lq"):  # Hydra: Missing mandatory value
        datamodule("paired", *SMALL)


def test_pairs_of_different_sizes_are_reported(tmp_path: Path) -> None:
    lq, gt = pair_folders(tmp_path / "a", ["x"], (48, 40))
    write_images(tmp_path / "b", [(40, 48)])
    (gt / "x.png").unlink()
    (tmp_path / "b" / "img_000.png").rename(gt / "x.png")
    dm = paired(lq, gt)
    dm.setup("test")
    with pytest.raises(ValueError, match=r"data\.lq: pair sizes differ"):
        next(iter(dm.test_dataloader()))


def test_evaluate_scores_a_model_on_paired_folders(tmp_path: Path, shared_data: Path) -> None:
    """The README's command: a shipped model on the user's own pairs (real JPEGs of photos)."""
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    for folder in (lq, gt):
        folder.mkdir()
    for name in ("astronaut", "chelsea"):
        photo = Image.open(shared_data / "natural" / f"{name}.png").convert("RGB")
        photo = photo.crop((0, 0, 96, 64))
        photo.save(gt / f"{name}.png")
        photo.save(lq / f"{name}.jpg", quality=10)
    run = tmp_path / "run"
    out = run_module(
        "ucdir.evaluate", "pretrained=jpeg-cpu-regression", "task=paired", f"data.lq={lq}",
        f"data.gt={gt}", "metrics=[psnr,ssim]", "patch=none", "score_input=true",
        "data.num_workers=0", f"hydra.run.dir={run}", timeout=300, check=True,
    )  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines()[2:]}
    psnr = {name: float(row.split("|")[6]) for name, row in rows.items()}
    assert psnr["paired:jpeg-cpu-regression"] > psnr["paired input"] + 0.3, out.stdout
    assert sorted(p.name for p in (run / "restored").iterdir()) == ["00000.png", "00001.png"]
