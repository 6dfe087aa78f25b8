"""The main job (`make demo` = `python -m ucdir.demo`), shortened: same code path, fewer steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO


def test_makefile_demo_target_runs_the_demo_module() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "demo: $(STAMP)" in makefile and "-m ucdir.demo" in makefile


@pytest.mark.slow
def test_demo_trains_restores_and_reports(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ucdir.demo",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            "callbacks.ema.update_starting_at_step=3",
            "demo.steps=5",
            f"hydra.run.dir={run}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "UCDIR_LOG_DIR": str(tmp_path / "logs")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "restored" in out.stdout and "PSNR" in out.stdout
    metrics = json.loads((run / "demo_metrics.json").read_text())
    for key in ("jpeg_input", "x_init", "restored"):
        assert 5 < metrics[key]["psnr"] < 60 and 0 < metrics[key]["ssim"] <= 1
    with Image.open(run / "demo_panel.png") as im:
        h, w = metrics["size"]
        assert im.size == (4 * w, h)
    assert (run / "checkpoints" / "last.ckpt").is_file()
