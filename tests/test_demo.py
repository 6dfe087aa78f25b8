"""The first run (`make demo` = `python -m ucdir.demo`): the shipped models restore the held-out
photo better than its JPEG, then a short fine-tuning runs and restores again."""

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.commands import run_module
from tests.conftest import REPO


def test_makefile_demo_target_runs_the_demo_module() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "demo: $(STAMP)" in makefile and "-m ucdir.demo" in makefile


@pytest.mark.slow
def test_demo_restores_better_than_the_jpeg_then_fine_tunes(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    out = run_module(
        "ucdir.demo",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "demo.samplers=[{name: ddpm, steps: 50}, {name: dpmpp, steps: 10}]",
        f"hydra.run.dir={run}",
        cwd=tmp_path,  # from any directory: the models and configs come with the package
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs")},
        check=True,
    )
    metrics = json.loads((run / "demo_metrics.json").read_text())
    rows = {r["method"].split(" (")[0].split(",")[0]: r for r in metrics["rows"]}
    jpeg, regression = rows["JPEG input"], rows["regression"]
    ddpm = next(r for r in metrics["rows"] if "DDPMScheduler 50" in r["method"])
    fast = next(r for r in metrics["rows"] if "DPMSolverMultistepScheduler 10" in r["method"])
    student = next(r for r in metrics["rows"] if "jpeg-cpu-distilled" in r["method"])
    assert student["method"].endswith("1 network call")
    tuned = metrics["rows"][-1]
    assert "fine-tuned 4 steps" in tuned["method"]
    # the shipped models' numbers on the held-out photo (README's demo table, model cards): the
    # JPEG input and the regression are one deterministic pass (to rounding); the diffusion rows
    # are seeded 50- and 10-step chains (to the last steps' numerics on another CPU)
    for row, psnr, niqe, tol in (
        (jpeg, 28.29, 7.021, 0.01),
        (regression, 29.24, 5.994, 0.05),
        (ddpm, 28.45, 5.344, 0.15),
        (fast, 28.32, 4.710, 0.15),
        (student, 28.35, 4.958, 0.05),
    ):
        assert row["psnr"] == pytest.approx(psnr, abs=tol), row
        assert row["niqe"] == pytest.approx(niqe, abs=tol), row
    # and its shape: the regression beats the JPEG clearly, the diffusion restoration beats the
    # JPEG on PSNR and NIQE and is more natural (NIQE) than its regression twin
    assert regression["psnr"] > jpeg["psnr"] + 0.8 and regression["niqe"] < jpeg["niqe"] - 0.8
    assert ddpm["psnr"] > jpeg["psnr"] + 0.1 and ddpm["niqe"] < regression["niqe"] - 0.5
    assert fast["psnr"] > jpeg["psnr"] and fast["niqe"] < regression["niqe"] - 1.0
    # the one-call student (two students blended, one trained with LPIPS-Alex): below the
    # regression on LPIPS (on this photo by 0.005 only) and NIQE (by 1.0)
    if student.get("lpips") is not None:
        assert student["lpips"] < regression["lpips"] < jpeg["lpips"]
    assert student["niqe"] < regression["niqe"] - 0.8 and student["psnr"] > jpeg["psnr"]
    # 4 fine-tuning steps barely move the model: within 0.3 dB and 0.5 NIQE of the shipped one
    assert tuned["psnr"] == pytest.approx(fast["psnr"], abs=0.3), tuned
    assert tuned["niqe"] == pytest.approx(fast["niqe"], abs=0.5) and tuned["niqe"] < jpeg["niqe"]
    assert "| JPEG input (quality 10) |" in out.stdout and "fine-tuning: 4 steps" in out.stdout
    with Image.open(run / "demo_panel.png") as im:
        h, w = metrics["size"]
        assert im.size == (5 * w, h)
    assert (run / "checkpoints" / "last.ckpt").is_file()
