"""Offline weights: lookup order, the missing-file error, LPIPS and pyiqa-NIQE built from files."""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from tests.metrics.conftest import random_images
from ucdir.metrics import CorruptWeightsError, Metrics, MetricUnavailableError, MissingWeightsError
from ucdir.metrics.niqe import pristine_model
from ucdir.metrics.pretrained import build_inception, build_lpips, build_pyiqa_niqe
from ucdir.metrics.specs import METRICS
from ucdir.metrics.weights import ALEXNET, INCEPTION, PYIQA_NIQE, find_weights


def test_missing_file_error_names_file_source_and_directory() -> None:
    with pytest.raises(MissingWeightsError) as info:
        find_weights(ALEXNET)
    message = str(info.value)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    assert "alexnet-owt-7be5be79.pth" in message
    assert ALEXNET.url in message and "7be5be79" in message
    assert str(cache / ALEXNET.name) in message  # exactly where to put it
    assert "UCDIR_WEIGHTS_DIR" in message
    assert info.value.searched == [cache]


def test_weights_dir_env_is_searched_first_and_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError) as info:
        find_weights(INCEPTION)
    assert str(tmp_path / INCEPTION.name) in str(info.value)
    assert info.value.searched[0] == tmp_path
    (tmp_path / INCEPTION.name).write_bytes(b"")
    assert find_weights(INCEPTION) == tmp_path / INCEPTION.name


def test_weightless_metrics_look_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise AssertionError("a weights file was looked up")

    for name, spec in METRICS.items():
        if spec.build is not None:
            monkeypatch.setitem(METRICS, name, replace(spec, build=fail))
    metrics = Metrics(["psnr", "ssim", "ssim3d", "niqe"])
    metrics.update(random_images(1, 200, 200), random_images(1, 200, 200, seed=1))
    assert set(metrics.compute().aggregate) == {
        "images",
        "identical",
        "psnr",
        "ssim",
        "ssim3d",
        "niqe",
    }


def test_missing_weights_raise_or_skip_and_the_rest_is_computed() -> None:
    with pytest.raises(MetricUnavailableError, match=r"alexnet-owt-7be5be79\.pth") as info:
        Metrics(["psnr", "lpips", "fid"])
    assert "fid" in str(info.value)
    metrics = Metrics(["psnr", "lpips", "fid", "kid"], on_missing="skip")
    assert metrics.names == ["psnr"]
    assert set(metrics.skipped) == {"lpips", "fid", "kid"}
    assert "alexnet-owt-7be5be79.pth" in metrics.skipped["lpips"]
    assert "weights-inception-2015-12-05-6726825d.pth" in metrics.skipped["fid"]
    gt = random_images(1, 64, 64)
    metrics.update(gt, gt)
    result = metrics.compute()
    assert result.aggregate["psnr"] > 40 and result.skipped == metrics.skipped
    assert metrics.protocol()["skipped"] == metrics.skipped


def test_fid_without_torch_fidelity_names_the_requirement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs whether or not torch-fidelity is installed: the import is made to fail."""
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # `import` raises ModuleNotFound
    with pytest.raises(MetricUnavailableError, match="pip install 'torch-fidelity") as info:
        build_inception()
    assert INCEPTION.name in str(info.value)  # the weights file is missing too: both are named
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / INCEPTION.name).write_bytes(b"")
    with pytest.raises(MetricUnavailableError, match="pip install 'torch-fidelity") as info:
        build_inception()
    assert INCEPTION.name not in str(info.value)


@pytest.fixture
def random_alexnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A (randomly initialised) torchvision AlexNet file under the expected name."""
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / ALEXNET.name)
    return tmp_path / ALEXNET.name


def test_lpips_is_built_from_local_files(random_alexnet: Path) -> None:
    lpips_alex = build_lpips()
    trunk = torch.load(random_alexnet, weights_only=True)
    assert torch.equal(
        lpips_alex.net.net.state_dict()["slice2.3.weight"], trunk["features.3.weight"]
    )
    import lpips

    wheel = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    linear = torch.load(wheel, map_location="cpu", weights_only=True)
    assert torch.equal(lpips_alex.net.lin0.model[1].weight, linear["lin0.model.1.weight"])
    gt = random_images(2, 64, 64)
    assert torch.allclose(lpips_alex(gt, gt), torch.zeros(2), atol=1e-6)
    assert (lpips_alex(random_images(2, 64, 64, seed=5), gt) > 0).all()


def test_metrics_score_lpips_per_image_from_a_weights_dir_file(random_alexnet: Path) -> None:
    """`Metrics(["lpips"])` finds the AlexNet file through $UCDIR_WEIGHTS_DIR and each row is
    the `lpips` package's own distance of the 8-bit-rounded pair (its [0, 1] input mode)."""
    import lpips

    metrics = Metrics(["lpips"])
    gt = random_images(1, 64, 64)
    noise = 0.1 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0))
    noisy = (gt + noise).clamp(0, 1)
    metrics.update(gt, gt)
    metrics.update(noisy, gt)
    rows = metrics.compute().per_image
    # by hand: lpips' own network with the same trunk file, inputs mapped by lpips itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    trunk = torch.load(random_alexnet, weights_only=True)
    net.net.load_state_dict(
        {k: trunk[f"features.{k.split('.', 1)[1]}"] for k in net.net.state_dict()}
    )
    eight_bit = lambda x: (x * 255).round() / 255  # noqa: E731
    with torch.no_grad():
        expected = float(net(eight_bit(noisy), eight_bit(gt), normalize=True))
    assert rows[0]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["lpips"] == pytest.approx(expected, rel=1e-5) and expected > 0


def test_pyiqa_niqe_is_built_from_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    model = pristine_model()
    scipy.io.savemat(
        tmp_path / PYIQA_NIQE.name, {"mu_prisparam": model.mu[None], "cov_prisparam": model.cov}
    )
    scores = build_pyiqa_niqe()(random_images(2, 192, 192))
    assert scores.shape == (2,) and np.isfinite(scores.numpy()).all()
    # pyiqa is an optional extra (non-commercial licence): without it, a skip naming the extra
    monkeypatch.setitem(sys.modules, "pyiqa.archs.niqe_arch", None)
    with pytest.raises(MetricUnavailableError, match=r"ucdir\[pyiqa\]"):
        build_pyiqa_niqe()
    assert "niqe_pyiqa" in Metrics(["psnr", "niqe_pyiqa"], on_missing="skip").skipped


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
@pytest.mark.parametrize("which", ["lpips", "fid"])
def test_a_corrupt_weights_file_is_an_error_naming_it(
    kind: str, which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a skipped metric: the user put the file there; the error names it and its source."""
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path))
    file = ALEXNET if which == "lpips" else INCEPTION
    path = tmp_path / file.name
    if kind == "truncated":
        torch.save(torchvision.models.alexnet().state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(CorruptWeightsError) as info:
        Metrics([which, "psnr"], on_missing="skip")
    assert str(path) in str(info.value) and file.url in str(info.value)
