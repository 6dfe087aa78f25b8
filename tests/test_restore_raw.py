"""`python -m ucdir.restore` on camera raw files with a model whose input is packed raw (trained
with `task=sid task.input=packed`), decoded exactly as the sid task decodes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import compose
from tests.data.test_sid import KDC, fake_sid, sid
from tests.test_restore_robust import restore_cfg
from ucdir.data.images import MAX_PIXELS
from ucdir.hub import UCDIR
from ucdir.restore import cli
from ucdir.restore import session as session_module
from ucdir.restore.inputs import list_inputs, read_input


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported (untrained) packed-raw model: tiny, no attention, exposure-ratio scalar."""
    cfg = compose(
        "train",
        [
            "debug=tiny",
            "task=sid",
            "task.input=packed",
            "task.aux_scalars=[exposure_ratio]",
            "model.predictor.width=8",
            "model.denoiser.width=8",
            "model.denoiser.attn_levels=[]",
            "model.denoiser.mid_attn=false",
        ],
    )

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True)

    model = UCDIR(
        predictor=plain(cfg.model.predictor),
        denoiser=plain(cfg.model.denoiser),
        sampler=plain(cfg.model.sampler),
        task=plain(cfg.task),
    )
    folder = tmp_path_factory.mktemp("packed") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def raw_file(shared_data: Path) -> Path:
    return shared_data / "raw" / KDC  # GRBG, 512 x 768 sensor


def test_a_raw_file_is_restored_by_a_packed_raw_model(
    packed_model: Path, raw_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = restore_cfg(
        f"pretrained={packed_model}",
        f"input={raw_file}",
        f"output={out}",
        "exposure_ratio=4",
        "sampler=regression",
    )
    assert cli.run(cfg) == [out / "RAW_KODAK_DC50.png"]
    with Image.open(out / "RAW_KODAK_DC50.png") as im:
        assert im.size == (768, 512) and im.mode == "RGB"  # packed 256 x 384, shuffled x 2
    side = json.loads((out / "RAW_KODAK_DC50.json").read_text())
    assert side["input_kind"] == "raw" and side["exposure_ratio"] == 4.0
    assert side["scalars"] == pytest.approx([4 / 300])  # ratio / task.max_ratio, as in training


def test_raw_input_is_the_sid_tasks_packed_input(tmp_path: Path, raw_file: Path) -> None:
    root = fake_sid(
        tmp_path / "SID",
        raw_file.parent,
        {"train": [("00001", "1", KDC)], "val": [("20001", "1", KDC)]},  # ratio 10 / 1
    )
    dm = sid(root, "task.input=packed", "data.test_list=null", "data.batch_size=1")
    dm.prepare_data()
    dm.setup("validate")
    trained_on = next(iter(dm.val_dataloader())).lq  # trimmed 4 px per side of the packed grid
    given = read_input(raw_file, "raw", MAX_PIXELS, exposure_ratio=10.0)
    assert given.shape == (1, 4, 256, 384)
    torch.testing.assert_close(given[..., 4:-4, 4:-4], trained_on, atol=1e-4, rtol=0)


def test_a_folder_gives_the_files_the_model_takes(tmp_path: Path, raw_file: Path) -> None:
    (tmp_path / "DSC001.KDC").symlink_to(raw_file)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "DSC001.JPG")
    assert [p.name for p in list_inputs(tmp_path, "raw")] == ["DSC001.KDC"]
    assert [p.name for p in list_inputs(tmp_path, "image")] == ["DSC001.JPG"]
    (tmp_path / "DSC001.KDC").unlink()
    with pytest.raises(ValueError, match=r"no images \(\.arw.*restores camera raw files"):
        list_inputs(tmp_path, "raw")


def test_the_wrong_kind_of_input_is_a_clear_error_before_any_compute(
    checkpoint: Path,
    packed_model: Path,
    raw_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "restore", lambda *a, **k: pytest.fail("computed an image"))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    out = f"output={tmp_path / 'out'}"
    cases = [
        (f"ckpt_path={checkpoint}", f"input={raw_file}", "is a camera raw file, but this model "),
        (f"pretrained={packed_model}", f"input={photo}", "is not a camera raw file, but this mod"),
        (f"pretrained={packed_model}", f"input={raw_file}", "raw files, amplified like in train"),
        (f"ckpt_path={checkpoint}", f"input={photo}", "exposure_ratio: only for camera raw"),
    ]
    for i, (model, given, message) in enumerate(cases):
        ratio = ["exposure_ratio=10"] if i in (1, 3) else []
        with pytest.raises(ValueError, match=message):
            cli.run(restore_cfg(model, given, out, *ratio))
