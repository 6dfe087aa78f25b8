"""Bad inputs never pass silently or hang: non-finite pixels, a non-finite restoration, absurd
tilings, identical pairs and large images in `evaluate`, symlink loops and nested output folders,
animated images, and user errors printed as one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.bad_files import animated_gif, float_tiff
from tests.commands import run_module
from tests.test_restore_robust import photos, restore_cfg
from ucdir.data.images import NonFiniteImageError, decode_image, read_image
from ucdir.diffusion.memory import AutoPatchSplit
from ucdir.diffusion.patching import NaivePatchSplit, PatchSplit
from ucdir.restore import cli
from ucdir.restore import session as session_module
from ucdir.restore.core import Restoration
from ucdir.restore.outputs import NonFiniteRestorationError, is_done
from ucdir.types import Cond

# 1. non-finite input pixels


@pytest.mark.parametrize(
    ("channels", "bad", "count"),
    [(3, float("nan"), 1), (1, float("inf"), 1), (1, float("nan"), 5), (3, -float("inf"), 2)],
)
def test_a_float_tiff_with_non_finite_values_is_refused_with_the_count(
    tmp_path: Path, channels: int, bad: float, count: int
) -> None:
    path = float_tiff(tmp_path / "scan.tif", channels, bad, count)
    with pytest.raises(NonFiniteImageError, match=rf"scan\.tif has {count} non-finite value"):
        read_image(path, "input")
    repaired = decode_image(path, "input", repair_nonfinite=True)
    assert repaired.repaired == count and repaired.pixels.shape == (16, 20, 3)
    assert np.isfinite(repaired.pixels).all()
    assert repaired.pixels.reshape(-1)[0] == (1.0 if bad > 0 else 0.0)


def test_a_finite_float_rgb_tiff_is_read(tmp_path: Path) -> None:
    path = float_tiff(tmp_path / "ok.tif", 3, 0.5, 1)
    pixels = read_image(path, "input")
    assert pixels.shape == (16, 20, 3) and pixels[0, 0, 0] == 0.5


def test_restore_reports_a_non_finite_input_at_the_end_and_restores_the_rest(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, out = photos(tmp_path / "in", ("b", "c")), tmp_path / "out"
    float_tiff(src / "a_scan.tif")
    cfg = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match=r"1 file\(s\).*a_scan"):
        cli.run(cfg)
    assert "a_scan.tif has 1 non-finite value(s)" in caplog.text
    assert is_done(out / "b.png", 1) and is_done(out / "c.png", 1)
    assert not (out / "a_scan.png").exists() and not (out / "a_scan.json").exists()

    repaired = restore_cfg(
        f"ckpt_path={checkpoint}",
        f"input={src / 'a_scan.tif'}",
        f"output={out}",
        "repair_nonfinite=true",
    )
    with caplog.at_level(logging.WARNING):
        cli.run(repaired)
    assert "1 non-finite value(s) replaced" in caplog.text
    assert json.loads((out / "a_scan.json").read_text())["repaired_nonfinite"] == 1


# 2. a non-finite restoration is an error, never a written image


def test_a_non_finite_restoration_is_an_error_and_nothing_is_written(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = photos(tmp_path / "in", ("a",)), tmp_path / "out"

    def broken(lq: torch.Tensor, *args: Any, **kwargs: Any) -> Restoration:
        restored = torch.full_like(lq[:, :3], 0.5)
        restored[..., 3, 4] = float("nan")
        return Restoration(restored, restored)

    monkeypatch.setattr(session_module, "restore", broken)
    cfg = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    with pytest.raises(NonFiniteRestorationError, match=r"restoring .*a\.png gave 3 non-finite"):
        cli.run(cfg)
    assert list(out.iterdir()) == []


# 3. absurd tilings are refused with the numbers


def test_a_tiling_with_a_tiny_stride_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValueError, match=r"patch\.tile=66 .*overlap=32 .*stride of 2 px.*17 px"):
        PatchSplit(66, 32)
    with pytest.raises(ValueError, match=r"patch\.overlap=24 or less, or patch\.tile=86"):
        NaivePatchSplit(66, 32)
    PatchSplit(86, 32)  # stride 22 >= 86 / 4
    PatchSplit(86, 24)


def test_too_many_tiles_for_the_image_at_hand_are_refused_before_any_compute() -> None:
    calls: list[int] = []

    def eps_fn(x: torch.Tensor, gamma: torch.Tensor, cond: Cond) -> torch.Tensor:
        calls.append(1)
        return x

    tiled = PatchSplit(32, 8, max_tiles=100).wrap(eps_fn)
    x = torch.zeros(1, 3, 300, 400)
    with pytest.raises(
        ValueError,
        match=r"400×300 image .*stride 16 px\) makes 18×24 = 432 tiles.*tile \(e\.g\. 64\)",
    ):
        tiled(x, torch.ones(1), Cond(x, x))
    assert calls == []
    assert len(PatchSplit(64, 8, max_tiles=100).boxes(300, 400)) <= 100


def test_auto_tiling_never_picks_a_refused_stride() -> None:
    auto = AutoPatchSplit(1e-9, overlap=40)  # nothing fits: the smallest tile
    net = torch.nn.Conv2d(3, 3, 1)

    class Eps(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor, gamma: torch.Tensor, cond: Cond) -> torch.Tensor:
            return self.net(x)

    x = torch.zeros(1, 3, 200, 200)
    split = auto.resolve(Eps(), x, None, 1)
    assert split.tile - 2 * 40 >= split.tile / 4


# 4. evaluate: finite, valid JSON


def _strict_json(path: Path) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}: not valid JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_an_identical_pair_scores_the_psnr_cap_and_the_json_stays_valid(tmp_path: Path) -> None:
    from tests.conftest import compose
    from ucdir.evaluate import run as evaluate

    gt, restored = photos(tmp_path / "gt", ("same", "other")), tmp_path / "restored"
    restored.mkdir()
    (restored / "same.png").write_bytes((gt / "same.png").read_bytes())
    (restored / "other.png").write_bytes((gt / "same.png").read_bytes())  # differs from gt/other
    cfg = compose("eval", ["mode=score", f"restored={restored}", f"gt={gt}", "metrics=[psnr,ssim]"])
    out = tmp_path / "run"
    scores = evaluate(cfg, out)
    (row,) = _strict_json(out / "results.json")
    assert row["identical"] == 1 and row["images"] == 2
    by_name = {r["name"]: r["psnr"] for r in scores.per_image}
    assert by_name["same"] == 100.0 and by_name["other"] < 100.0
    assert row["psnr"] == pytest.approx((100.0 + by_name["other"]) / 2)
    assert "identical" in _strict_json(out / "protocol.json")["metrics"]["psnr"]["cap"]
    assert "1 image(s) identical" in (out / "results.md").read_text()


def test_a_non_finite_value_that_slips_through_raises_instead_of_writing_invalid_json(
    tmp_path: Path,
) -> None:
    from ucdir.metrics import write_results

    with pytest.raises(ValueError, match="JSON"):
        write_results([{"method": "m", "psnr": float("inf")}], tmp_path, {"skipped": {}})
    assert not (tmp_path / "results.json").exists()


# 5. evaluate scores large images in bounded memory


@pytest.mark.parametrize("strip_rows", [1, 4, 10, 37])
def test_ssim_in_strips_equals_the_whole_image_value(strip_rows: int) -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    from ucdir.metrics.fidelity import ssim, ssim3d

    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 37, 53, generator=gen)
    restored = (gt + 0.1 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    whole = structural_similarity_index_measure(
        restored, gt, kernel_size=11, sigma=1.5, data_range=1.0, reduction="none"
    )
    assert isinstance(whole, torch.Tensor)
    torch.testing.assert_close(ssim(restored, gt, strip_rows), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        ssim3d(restored, gt, strip_rows), ssim3d(restored, gt, 37), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("metric", ["ssim", "ssim3d"])
def test_ssim_of_a_large_image_allocates_a_fraction_of_the_whole_image_path(metric: str) -> None:
    """Every tensor allocated is counted (`PeakTensorMemory`; on the meta device, so nothing is
    computed): a 16 MP pair in strips against the same pair in one strip (3.7 GB)."""
    import ucdir.metrics.fidelity as fidelity
    from ucdir.diffusion.memory import PeakTensorMemory

    fn = getattr(fidelity, metric)
    restored = torch.empty(1, 3, 3264, 4896, device="meta")
    peaks = []
    for strip_rows in (None, 3264):
        with PeakTensorMemory() as tracker:
            fn(restored, torch.empty_like(restored), strip_rows)
        peaks.append(tracker.peak)
    assert peaks[0] < peaks[1] / 4, peaks
    assert peaks[0] < 2**30, peaks


# 6. symlink loops and nested output folders


def test_a_folder_symlinked_into_itself_is_listed_once_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ucdir.restore.inputs import list_inputs

    src = photos(tmp_path / "in", ("a", "b"))
    (src / "sub").mkdir()
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        assert list_inputs(src, "image") == [src / "a.png", src / "b.png"]
    assert f"skipped {src / 'sub' / 'loop'}" in caplog.text and "symlink loop" in caplog.text


def test_an_output_folder_inside_the_input_folder_is_skipped_so_a_run_can_continue(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = photos(tmp_path / "in", ("a", "b"))
    out = src / "restored"
    first = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    assert cli.run(first) == [out / "a.png", out / "b.png"]
    (out / "b.png").unlink()  # as if interrupted
    calls: list[int] = []
    real = session_module.restore
    monkeypatch.setattr(session_module, "restore", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = restore_cfg(
        f"ckpt_path={checkpoint}", f"input={src}", f"output={out}", "skip_existing=true"
    )
    assert cli.run(again) == [out / "a.png", out / "b.png"]
    assert len(calls) == 1


def test_inputs_that_really_share_a_stem_are_named(tmp_path: Path) -> None:
    from ucdir.restore.outputs import plan_outputs

    inputs = [tmp_path / "x" / "a.png", tmp_path / "y" / "a.jpg", tmp_path / "b.png"]
    with pytest.raises(ValueError, match=r"a\.png <- .*x/a\.png, .*y/a\.jpg; rename"):
        plan_outputs(inputs, tmp_path / "out", 1, False, False)


# 7. one policy for animated / multi-frame images


@pytest.mark.parametrize("suffix", [".gif", ".png", ".tif", ".webp"])
def test_a_multi_frame_file_is_refused_with_its_frame_count(tmp_path: Path, suffix: str) -> None:
    from PIL import Image

    from ucdir.data.images import MultiFrameImageError

    frames = [Image.new("RGB", (24, 20), (40 * k, 80, 120)) for k in range(3)]
    path = tmp_path / f"clip{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(MultiFrameImageError, match=r"clip\..* is animated or multi-page \(3 "):
        read_image(path, "input")
    single = tmp_path / f"still{suffix}"
    frames[0].save(single)
    assert read_image(single, "input").shape == (20, 24, 3)


def test_gifs_follow_one_policy_in_folder_and_single_file_mode(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, out = photos(tmp_path / "in", ("b",)), tmp_path / "out"
    animated_gif(src / "a_clip.gif", 3)
    animated_gif(src / "c_still.gif", 1)
    folder = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match=r"1 file\(s\).*a_clip"):
        cli.run(folder)
    assert "a_clip.gif is animated or multi-page (3 frames)" in caplog.text
    assert is_done(out / "b.png", 1) and is_done(out / "c_still.png", 1)
    assert not (out / "a_clip.png").exists()

    caplog.clear()
    single = restore_cfg(
        f"ckpt_path={checkpoint}", f"input={src / 'a_clip.gif'}", f"output={tmp_path / 'o2'}"
    )
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match=r"1 file\(s\).*a_clip"):
        cli.run(single)
    assert "(3 frames)" in caplog.text


# 8. user errors print as one clear line


def _restore_missing_input(tmp_path: Path, **env: str) -> Any:
    paths = [f"input={tmp_path / 'nope.png'}", f"output={tmp_path / 'out'}"]
    return run_module(
        "ucdir.restore",
        "pretrained=x",
        *paths,
        timeout=300,
        env={"UCDIR_LOG_DIR": str(tmp_path), **env},
    )


def test_a_user_error_prints_one_error_line_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    result = _restore_missing_input(tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "Error:" in line]
    assert errors == [
        f"Error: input: '{tmp_path / 'nope.png'}' is neither an image file nor a folder"
    ]

    full = _restore_missing_input(tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode == 1
    assert "Traceback" in full.stderr and "FileNotFoundError" in full.stderr


def test_a_programming_error_keeps_its_traceback() -> None:
    from ucdir.overrides import reports_user_errors

    @reports_user_errors
    def task(cfg: Any) -> None:
        raise TypeError("a bug")

    @reports_user_errors
    def user(cfg: Any) -> None:
        raise ValueError("bits must be 8 or 16")

    with pytest.raises(TypeError, match="a bug"):
        task(None)
    with pytest.raises(SystemExit, match=r"^Error: bits must be 8 or 16$"):
        user(None)
