"""`python -m ucdir.train task=<each> data.root=<tiny folder> debug=fdr` for all five tasks."""

from pathlib import Path

import pytest

from tests.commands import run_module
from tests.conftest import compose
from tests.data.conftest import write_images
from tests.data.test_gopro import synthetic_gopro
from tests.data.test_sid import KDC, fake_sid
from ucdir.train import train


def tiny_root(task: str, tmp_path: Path, shared: Path | None) -> Path:
    if task == "gopro":
        return synthetic_gopro(tmp_path / "GOPRO_Large", size=(72, 64))
    if task == "sid":
        if shared is None:
            pytest.skip("../shared/data/raw is not present")
        entries = {
            "train": [("00001", "0.1", KDC), ("00002", "0.04", KDC)],
            "val": [("20001", "0.1", KDC)],
            "test": [("10001", "0.1", KDC)],
        }
        return fake_sid(tmp_path / "SID", shared / "raw", entries)
    if task == "samples":
        write_images(tmp_path / "samples" / "train", [(80, 72)] * 2)
        write_images(tmp_path / "samples" / "val", [(72, 64)])
        return tmp_path / "samples"
    write_images(tmp_path / "clean", [(80, 72)] * 6)
    return tmp_path / "clean"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["jpeg", "gopro", "sid", "blind", "samples"])
def test_fast_dev_run_per_task(task: str, tmp_path: Path) -> None:
    from tests.conftest import SHARED_DATA

    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    root = tiny_root(task, tmp_path, shared)
    extra = [f"data.cache_dir={tmp_path / 'cache'}"] if task == "sid" else []
    extra += ["data.val_count=2"] if task in ("jpeg", "blind") else []
    cfg = compose(
        "train",
        [
            f"task={task}",
            f"data.root={root}",
            "debug=fdr",
            f"paths.output_dir={tmp_path / 'run'}",
            *extra,
        ],
    )
    metrics = train(cfg)
    assert metrics["train/loss"] > 0 and "val/psnr" in metrics


@pytest.mark.slow
def test_the_documented_command_line(tmp_path: Path) -> None:
    root = tiny_root("jpeg", tmp_path, None)
    run_module(
        "ucdir.train",
        "task=jpeg",
        f"data.root={root}",
        "debug=fdr",
        "data.val_count=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs")},
        check=True,
    )
