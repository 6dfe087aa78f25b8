"""The quality loop: validation scores through `ucdir.metrics.Metrics`, the scorer of `evaluate`,
logged to every logger; equal to `evaluate mode=score` on the saved images; the same under DDP."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import Tensor, nn

from tests.commands import run_module
from tests.conftest import compose
from ucdir.evaluate import run as evaluate
from ucdir.metrics.specs import METRICS
from ucdir.metrics.specs import PAPER_METRICS as PAPER
from ucdir.train import build, train


class StandInLPIPS(nn.Module):
    """A weightless stand-in with LPIPS's interface: mean |Δ| of 4×4-pooled images per image."""

    def forward(self, restored: Tensor, gt: Tensor) -> Tensor:
        pool = nn.functional.avg_pool2d
        return (pool(restored, 4) - pool(gt, 4)).abs().mean((1, 2, 3))


def stand_in_features() -> nn.Module:
    """A weightless FID/KID feature extractor: 8×8 average pooling, flattened (192 features)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten()).eval()


@pytest.fixture
def stand_in_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_ins = {"lpips": StandInLPIPS, "fid": stand_in_features, "kid": stand_in_features}
    for name, stand_in in stand_ins.items():
        monkeypatch.setitem(METRICS, name, replace(METRICS[name], build=stand_in))


def _dists_weights_installed() -> bool:
    from ucdir.metrics import MetricUnavailableError
    from ucdir.metrics.perceptual import build_dists

    try:
        build_dists()
    except MetricUnavailableError:
        return False
    return True


def _metrics_csv(run_dir: Path) -> list[dict[str, str]]:
    with open(next(run_dir.glob("csv/*/metrics.csv"))) as f:
        return list(csv.DictReader(f))


def _val_row(run_dir: Path) -> dict[str, float]:
    row = next(r for r in _metrics_csv(run_dir) if r.get("val/psnr"))
    return {k: float(v) for k, v in row.items() if k.startswith("val/") and v}


@pytest.mark.slow
def test_validation_logs_the_evaluate_metrics_to_csv_and_wandb(
    train_cfg, tmp_path: Path, stand_in_networks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = train_cfg(
        "logger=[csv,wandb]",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "callbacks.log_restorations.save_images=true",
        "model.scorer.patch_size=128",  # the held-out photo (451×300) gives 6 patches
    )
    train(cfg)
    logged = _val_row(tmp_path)
    for metric in PAPER:
        assert f"val/{metric}" in logged and f"val/x_init/{metric}" in logged, sorted(logged)
    assert "val/kid_std" in logged
    if _dists_weights_installed():  # DISTS with the real VGG16 (`python -m ucdir.weights install`)
        assert "val/dists" in logged and "val/x_init/dists" in logged, sorted(logged)
    # the same numbers from `evaluate mode=score` on the saved validation images
    saved = tmp_path / "val_images" / "step0000002"
    for kind, prefix in (("restored", "val"), ("x_init", "val/x_init")):
        eval_cfg = compose(
            "eval",
            [
                f"restored={saved / kind}",
                f"gt={saved / 'gt'}",
                "protocol.patch_size=128",
                f"paths.log_dir={tmp_path / 'eval'}",
            ],
        )
        scores = evaluate(eval_cfg, tmp_path / "eval" / kind)
        (row,) = scores.rows
        for metric in PAPER:
            assert logged[f"{prefix}/{metric}"] == pytest.approx(row[metric], rel=1e-4, abs=1e-4)
    # wandb: the scalars in the run's history, the per-image table and the panels in its files
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    history = _wandb_history(next(run_dir.glob("run-*.wandb")))
    for metric in PAPER:
        for prefix in ("val", "val/x_init"):
            key = f"{prefix}/{metric}"
            assert history[key] == pytest.approx(logged[key], rel=1e-6), key
    (table_file,) = (run_dir / "files" / "media" / "table" / "val").glob("images_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:2] == ["name", "lpips"] and "x_init/psnr" in table["columns"]
    assert table["columns"][-4:] == ["lq", "x_init", "restored", "gt"]
    assert [r[0] for r in table["data"]] == ["00000"]
    assert list((run_dir / "files" / "media" / "images" / "val").glob("panel_0_*.png"))


def _wandb_history(path: Path) -> dict[str, float]:
    """Last value of every scalar in an offline run file. Its history items are protobuf
    messages `key` (field 2) + `value_json` (field 16): b"\x12" len key b"\x82\x01" len value."""
    data = path.read_bytes()
    values = {}
    for match in re.finditer(rb"\x12([\x01-\x7f])", data):
        n = match.group(1)[0]
        start = match.end()
        key, rest = data[start : start + n], data[start + n : start + n + 3]
        if len(rest) == 3 and rest[:2] == b"\x82\x01":
            raw = data[start + n + 3 : start + n + 3 + rest[2]]
            try:
                values[key.decode()] = float(json.loads(raw))
            except (UnicodeDecodeError, ValueError, TypeError):
                continue
    return values


def _folder_task(root: Path, val_sizes: list[tuple[int, int]]) -> Path:
    rng = np.random.default_rng(0)
    for split, sizes in (("train", [(96, 96)] * 2), ("val", val_sizes)):
        (root / split).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            base = rng.random((h // 8, w // 8, 3))
            image = np.kron(base, np.ones((8, 8, 1))) * 200 + rng.random((h, w, 3)) * 55
            Image.fromarray(image.astype(np.uint8)).save(root / split / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.timeout(600)  # a collective mismatch would hang, not fail
def test_two_ddp_processes_score_like_one(tmp_path: Path) -> None:
    """Three validation images over 2 processes (one padded slot): the same means and the same
    FID/KID (subsets smaller than the patch set) as one process."""
    data = _folder_task(tmp_path / "data", [(128, 200)] * 3)
    common = [
        "task=samples",
        f"data.root={data}",
        "data.crop=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "model=tiny",
        "model.optimizer.lr=0",  # validation of the initial weights in both runs
        "sampler.steps=2",
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=null",
        "trainer.num_sanity_val_steps=0",
        "val_metrics=[psnr,ssim,niqe,fid,kid]",
        "model.scorer.patch_size=16",
        "model.scorer.kid_subset_size=50",
        "+model.scorer.feature._target_=torch.nn.Flatten",
    ]
    values = []
    for devices in (1, 2):
        run_dir = tmp_path / f"run{devices}"
        extra = ["trainer.strategy=ddp"] if devices == 2 else []
        run_module(
            "ucdir.train",
            *common,
            f"trainer.devices={devices}",
            *extra,
            f"hydra.run.dir={run_dir}",
            timeout=300,
            env={"UCDIR_LOG_DIR": str(tmp_path / "logs")},
            check=True,
        )
        values.append(_val_row(run_dir))
    one, two = values
    assert {"val/fid", "val/kid", "val/niqe", "val/x_init/fid"} <= one.keys()
    assert one.keys() == two.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key


def test_sanity_validation_runs_before_training_with_few_sampler_steps(train_cfg) -> None:
    cfg = train_cfg(
        "trainer.fast_dev_run=false",
        "trainer.max_steps=1",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=1",
        "trainer.val_check_interval=100",
        "sampler.steps=5",
        "val_metrics=[psnr,niqe]",
    )
    datamodule, model, trainer = build(cfg)
    calls: list[tuple[bool, int]] = []
    denoiser_forward = model.denoiser.forward

    def counted(*args, **kwargs):
        calls.append((trainer.sanity_checking, trainer.global_step))
        return denoiser_forward(*args, **kwargs)

    model.denoiser.forward = counted  # type: ignore[method-assign]
    trainer.fit(model, datamodule=datamodule)
    sanity = [c for c in calls if c[0]]
    assert len(sanity) == model.sanity_steps == 2  # 2 sampler steps on one batch, before step 1
    assert "val" in model.results and math.isfinite(
        model.results["val"]["x_init"].aggregate["psnr"]
    )


def test_val_metrics_selects_what_is_scored(train_cfg) -> None:
    _, model, _ = build(train_cfg("val_metrics=[psnr,ssim]"))
    assert model.val_metrics == ["psnr", "ssim"]
    model._start_scoring()
    assert model.scores["restored"].names == ["psnr", "ssim"]
    assert model.scores["x_init"].names == ["psnr", "ssim"]


def test_trainer_test_scores_like_validation(train_cfg) -> None:
    cfg = train_cfg("trainer.fast_dev_run=false", "val_metrics=[psnr,ssim,niqe]")
    datamodule, model, trainer = build(cfg)
    (logged,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert {"test/psnr", "test/ssim", "test/niqe", "test/x_init/psnr"} <= logged.keys()
    result = model.results["test"]["restored"]
    assert logged["test/psnr"] == pytest.approx(result.aggregate["psnr"])
    assert [r["name"] for r in result.per_image] == ["00000"]
