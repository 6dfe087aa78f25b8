"""The metric table: complete and consistent, the one source of names, titles, directions and
default lists, and a new metric is one entry plus its function."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from tests.conftest import CONFIGS, REPO, compose
from tests.metrics.conftest import random_images
from ucdir.metrics import METRIC_NAMES, Metrics, MetricUnavailableError, results_row
from ucdir.metrics.results import markdown_table, per_image_csv, results_csv
from ucdir.metrics.specs import (
    METRICS,
    PAPER_METRICS,
    VALIDATION_METRICS,
    MetricSpec,
    ScoringOptions,
    default_metrics,
    per_image,
)

OPTIONS = ScoringOptions("rgb", 0, 256, 100, 1000, 0, custom_feature=False)


def _feature() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten())


def test_the_table_is_complete_and_consistent() -> None:
    assert tuple(METRICS) == METRIC_NAMES
    assert tuple(METRICS)[: len(PAPER_METRICS)] == PAPER_METRICS  # the paper's columns first
    assert set(VALIDATION_METRICS) <= METRICS.keys()
    titles = [spec.title for spec in METRICS.values()]
    assert len(set(titles)) == len(titles)
    for name, spec in METRICS.items():
        assert spec.name == name and spec.title
        assert spec.header.endswith("↑" if spec.higher_is_better else "↓")
        if spec.per_image:
            assert (spec.score is None) != (spec.build is None) and spec.accumulate is None
        else:
            assert spec.accumulate is not None and spec.build is not None and spec.score is None
        # what reads weights says which: the missing-weights messages and the docs rely on it
        assert bool(spec.needs) == (spec.build is not None), name
        about = spec.describe(OPTIONS)
        assert about and json.dumps(about, allow_nan=False)
    assert [m for m in METRICS if METRICS[m].higher_is_better] == ["psnr", "ssim", "ssim3d"]
    assert [m for m in METRICS if not METRICS[m].per_image] == ["fid", "kid"]


def test_a_malformed_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="either score or build"):
        MetricSpec("x", "X", higher_is_better=True)
    with pytest.raises(ValueError, match="accumulate and build"):
        MetricSpec("x", "X", higher_is_better=True, level="set")


def test_every_name_is_accepted_and_unknown_names_list_the_known_ones() -> None:
    for name in METRICS:  # empty weight caches: a network metric is skipped, not an error
        metrics = Metrics([name], feature=_feature(), on_missing="skip")
        assert metrics.names == [name] or name in metrics.skipped
    with pytest.raises(ValueError, match="subset of") as info:
        Metrics(["psnr", "fsim"])
    assert all(repr(name) in str(info.value) for name in METRICS)


def test_results_columns_follow_the_specs() -> None:
    row = {"method": "m", "images": 1, "psnr": 30.0, "ssim3d": 0.5}
    header = markdown_table([row]).splitlines()[0]
    extras = [METRICS["ssim3d"].header]  # an extra metric shows when a row has it
    expected = ["Method", *(METRICS[m].header for m in PAPER_METRICS), *extras, "Images"]
    assert header == "| " + " | ".join(expected) + " |"
    titles = results_csv([row]).splitlines()[0].split(",")
    assert titles[1:-2] == [*(METRICS[m].title for m in PAPER_METRICS), METRICS["ssim3d"].title]


def mean_absolute_error(restored: Tensor, gt: Tensor) -> Tensor:
    """(B, C, H, W) x2 -> (B,): the toy metric a newcomer adds."""
    return (restored - gt).abs().mean((1, 2, 3))


class MeanGap:
    """A toy set-level metric: |mean(restored) - mean(gt)| over the whole set's features."""

    def __init__(self, feature: nn.Module) -> None:
        self.feature, self.sums, self.count = feature, torch.zeros(2, dtype=torch.float64), 0

    def update(self, restored: Tensor, gt: Tensor) -> None:
        self.sums += torch.stack([self.feature(x).double().sum() for x in (restored, gt)])
        self.count += restored.shape[0]

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("mean_gap needs an image")
        return {"mean_gap": float((self.sums[0] - self.sums[1]).abs() / self.count)}

    def reset(self) -> None:
        self.sums.zero_()
        self.count = 0

    def spawn(self) -> MeanGap:
        return MeanGap(self.feature)

    def to(self, device: torch.device | str) -> MeanGap:
        return self


def test_a_new_metric_is_one_entry_and_its_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered here only: `Metrics`, its protocol and every results table pick it up."""
    monkeypatch.setitem(
        METRICS, "mae", MetricSpec("mae", "MAE", higher_is_better=False, score=mean_absolute_error)
    )
    monkeypatch.setitem(
        METRICS,
        "mean_gap",
        MetricSpec(
            "mean_gap",
            "Mean gap",
            higher_is_better=False,
            level="set",
            build=nn.Identity,
            needs=("nothing real",),
            accumulate=lambda feature, options, names: MeanGap(feature),
        ),
    )
    metrics = Metrics(["psnr", "mae", "mean_gap"])
    gt = random_images(3, 24, 32)
    restored = (gt + 0.1).clamp(0, 1)
    metrics.update(restored[:2], gt[:2])
    metrics.update(restored[2:], gt[2:])
    result = metrics.compute()
    quantized = [(x * 255).round() / 255 for x in (restored, gt)]
    per = mean_absolute_error(*quantized)
    assert [r["mae"] for r in result.per_image] == [float(v) for v in per]
    assert result.aggregate["mae"] == sum(float(v) for v in per) / 3
    gap = (quantized[0].double().sum() - quantized[1].double().sum()).abs() / 3
    assert result.aggregate["mean_gap"] == pytest.approx(float(gap))
    assert metrics.protocol()["metrics"]["mae"] == {  # type: ignore[index]
        "implementation": f"{__name__}.mean_absolute_error"
    }
    table = markdown_table([results_row("toy", result)])
    assert "| MAE ↓ | Mean gap ↓ |" in table.splitlines()[0]
    assert f"{result.aggregate['mae']:.4f}" in table
    assert "MAE" in results_csv([results_row("toy", result)]).splitlines()[0]
    assert per_image_csv(result.per_image).splitlines()[0] == "name,PSNR,MAE"
    with pytest.raises(ValueError, match="'mae'"):
        Metrics(["nope"])


def test_a_missing_package_is_reported_with_what_the_spec_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build() -> nn.Module:
        raise ModuleNotFoundError("No module named 'toy_iqa'")

    spec = MetricSpec("toy", "Toy", higher_is_better=True, build=build, needs=("toy-iqa>=1",))
    monkeypatch.setitem(METRICS, "toy", spec)
    with pytest.raises(MetricUnavailableError, match=r"toy: needs toy-iqa>=1: No module"):
        Metrics(["psnr", "toy"])
    metrics = Metrics(["psnr", "toy"], on_missing="skip")
    assert metrics.names == ["psnr"] and "toy-iqa>=1" in metrics.skipped["toy"]


def test_the_default_lists_come_from_the_table(tmp_path: Path) -> None:
    import ucdir.demo
    import ucdir.lit_module

    paths = [f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path}"]
    evaluate = compose("eval", paths)
    assert list(evaluate.metrics) == list(PAPER_METRICS)
    train = compose("train", ["debug=tiny", *paths])
    assert list(train.val_metrics) == list(train.model.val_metrics) == list(VALIDATION_METRICS)
    for cfg in (evaluate, train):  # resolved in place too (`--cfg job --resolve`, a run's config)
        OmegaConf.resolve(cfg)
    assert list(evaluate.protocol.metrics) == list(PAPER_METRICS)
    assert list(train.model.val_metrics) == list(VALIDATION_METRICS)
    assert ucdir.lit_module.VAL_METRICS == VALIDATION_METRICS
    assert ucdir.demo.METRICS == per_image(PAPER_METRICS) == ("lpips", "niqe", "psnr", "ssim")
    assert default_metrics("paper") == list(PAPER_METRICS)
    with pytest.raises(ValueError, match="paper"):
        default_metrics("all")
    # the command-line choice is unchanged
    assert list(compose("eval", [*paths, "metrics=[psnr,ssim,niqe]"]).metrics) == [
        "psnr",
        "ssim",
        "niqe",
    ]
    chosen = compose("train", ["debug=tiny", *paths, "val_metrics=[psnr,ssim]"])
    assert list(chosen.model.val_metrics) == ["psnr", "ssim"]


def test_the_paper_list_is_written_once() -> None:
    paper = re.compile(r"\W+".join(PAPER_METRICS))
    sources = [*CONFIGS.rglob("*.yaml"), *(REPO / "src").rglob("*.py")]
    spelled = [p.relative_to(REPO).as_posix() for p in sources if paper.search(p.read_text())]
    assert spelled == ["src/ucdir/metrics/specs.py"]
