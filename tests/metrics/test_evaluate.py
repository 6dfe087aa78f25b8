"""`python -m ucdir.evaluate mode=score`: pairing, image reading, and the CLI end to end."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from tests.commands import run_module
from tests.conftest import CONFIGS
from ucdir.evaluate import pair_images, read_image, run, score_folders
from ucdir.metrics import Metrics, MetricUnavailableError

# PSNR(blur, sharp) of the two shared GoPro pairs, from shared/data/README.md.
GOPRO_PSNR = {"Istanbul1": 24.05, "Flower1": 25.11}


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pairing_by_name_lists_unmatched_files_and_size_mismatches(tmp_path: Path) -> None:
    restored, gt = tmp_path / "restored", tmp_path / "gt"
    _png(restored / "a.png", _rgb(8, 8))
    gt.mkdir()
    Image.fromarray(_rgb(8, 8)).save(gt / "a.jpg")
    assert [p[0] for p in pair_images(restored, gt)] == ["a"]  # extensions may differ
    _png(restored / "only_restored.png", _rgb(8, 8))
    _png(gt / "only_gt.png", _rgb(8, 8))
    _png(restored / "b.png", _rgb(8, 8))
    _png(gt / "b.png", _rgb(8, 9))
    with pytest.raises(ValueError) as info:
        pair_images(restored, gt)
    message = str(info.value)
    assert "only_restored" in message and "only_gt" in message
    assert "size mismatch for b: restored 8×8, gt 9×8" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pair_images(tmp_path / "nowhere", gt)


def test_read_image_handles_modes_and_rejects_bad_files(tmp_path: Path) -> None:
    rgb = _rgb(5, 7)
    got = read_image(_png(tmp_path / "rgb.png", rgb))
    assert got.shape == (3, 5, 7) and got.dtype == torch.float32
    assert torch.equal(got, torch.from_numpy(rgb).permute(2, 0, 1) / 255.0)
    grey = read_image(_png(tmp_path / "grey.png", rgb[..., 0]))
    assert torch.equal(grey[0], grey[2]) and grey.shape == (3, 5, 7)
    deep = np.full((4, 4), 65535, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").min().item() == pytest.approx(1.0)
    opaque = np.dstack([rgb, np.full((5, 7), 255, np.uint8)])
    assert torch.equal(read_image(_png(tmp_path / "opaque.png", opaque)), got)
    opaque[0, 0, 3] = 0  # alpha is dropped, the stored colours kept (as everywhere in ucdir)
    assert torch.equal(read_image(_png(tmp_path / "alpha.png", opaque)), got)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "rgb.png").read_bytes()[:60])
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(truncated)


def test_score_folders_returns_rows_per_image_and_protocol(tmp_path: Path) -> None:
    gt = _png(tmp_path / "gt" / "x.png", _rgb(32, 48))
    _png(tmp_path / "method" / "x.png", np.asarray(Image.open(gt)))
    scores = score_folders(tmp_path / "method", tmp_path / "gt", Metrics(["psnr", "ssim"]))
    (row,) = scores.rows
    assert row["method"] == "method" and row["psnr"] == 100.0
    assert row["identical"] == 1
    assert row["ssim"] == pytest.approx(1.0)
    assert scores.per_image[0]["name"] == "x"
    assert scores.protocol["pairs"] == 1 and "psnr" in scores.protocol["metrics"]


def _eval_cfg(*overrides: str):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="eval", overrides=list(overrides))


def test_modes_are_checked_and_folders_are_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        run(_eval_cfg("mode=film", f"restored={tmp_path}", f"gt={tmp_path}"), tmp_path / "o")
    with pytest.raises(ValueError, match="ckpt_path"):
        run(_eval_cfg("mode=model"), tmp_path / "o")
    with pytest.raises(ValueError, match="restored=<folder>"):
        run(_eval_cfg(f"gt={tmp_path}"), tmp_path / "out")
    with pytest.raises(ValueError, match="input folder"):
        run(_eval_cfg(f"restored={tmp_path}", f"gt={tmp_path}/gt"), tmp_path)


def _gopro_pair(shared: Path, tmp_path: Path) -> Path:
    restored = tmp_path / "blur"
    shutil.copytree(shared / "gopro" / "blur", restored)
    return restored


def _evaluate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "UCDIR_WEIGHTS_DIR": None,
        "TORCH_HOME": str(tmp_path / "torch_home"),  # empty caches; nothing may download
    }
    return run_module("ucdir.evaluate", "mode=score", *args, env=env, timeout=300)


def test_score_cli_on_the_gopro_pairs(shared_data: Path, tmp_path: Path) -> None:
    restored = _gopro_pair(shared_data, tmp_path)
    run_dir = tmp_path / "run"
    out = _evaluate(
        tmp_path,
        f"restored={restored}",
        f"gt={shared_data / 'gopro' / 'sharp'}",
        "metrics=[psnr,ssim,niqe]",
        f"hydra.run.dir={run_dir}",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        "| Method | LPIPS ↓ | NIQE ↓ | FID ↓ | KID×10³ ↓ | PSNR ↑ | SSIM ↑"
    )
    assert "| blur |" in out.stdout and "not computed" not in out.stdout
    for name in ("results.md", "results.csv", "per_image.csv", "protocol.json"):
        assert (run_dir / name).is_file(), name
    with open(run_dir / "per_image.csv") as f:
        per_image = {r["name"]: r for r in csv.DictReader(f)}
    assert set(per_image) == set(GOPRO_PSNR)
    for name, want in GOPRO_PSNR.items():
        assert float(per_image[name]["PSNR"]) == pytest.approx(want, abs=0.005)
        assert 0 < float(per_image[name]["SSIM"]) < 1 and float(per_image[name]["NIQE"]) > 0
    with open(run_dir / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["PSNR"]) == pytest.approx(sum(GOPRO_PSNR.values()) / 2, abs=0.005)
    protocol = json.loads((run_dir / "protocol.json").read_text())
    assert protocol["pairs"] == 2 and protocol["metrics"]["psnr"]["color_space"] == "RGB"
    assert (run_dir / "results.md").read_text() == out.stdout


def test_missing_weights_are_reported_and_the_rest_is_written(
    shared_data: Path, tmp_path: Path
) -> None:
    restored = _gopro_pair(shared_data, tmp_path)
    gt = shared_data / "gopro" / "sharp"
    cfg = _eval_cfg(f"restored={restored}", f"gt={gt}", "metrics=[lpips,psnr]", "name=Blurry input")
    run(cfg, tmp_path / "run")
    where = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    notes = (tmp_path / "run" / "results.md").read_text()
    assert "**lpips** not computed: missing weights file 'alexnet_lpips.safetensors'" in notes
    assert "python -m ucdir.weights install" in notes
    assert str(where) in notes
    with open(tmp_path / "run" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["method"] == "Blurry input" and row["LPIPS"] == "" and float(row["PSNR"]) > 24
    assert "lpips" in json.loads((tmp_path / "run" / "protocol.json").read_text())["skipped"]
    assert not where.parent.exists()  # nothing was downloaded


def test_missing_weights_can_stop_the_run_before_scoring(tmp_path: Path) -> None:
    _png(tmp_path / "restored" / "a.png", _rgb(8, 8))
    _png(tmp_path / "gt" / "a.png", _rgb(8, 8))
    cfg = _eval_cfg(
        f"restored={tmp_path / 'restored'}",
        f"gt={tmp_path / 'gt'}",
        "metrics=[psnr,lpips]",
        "protocol.on_missing=raise",
    )
    with pytest.raises(MetricUnavailableError, match=r"alexnet-owt-7be5be79\.pth"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "results.csv").exists()
