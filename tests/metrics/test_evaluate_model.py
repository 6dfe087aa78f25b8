"""`evaluate` with a checkpoint: restoration and x_init rows, seconds per image, the combined
table of a sampler sweep; scoring images too small for NIQE/FID/KID."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.commands import run_module
from tests.conftest import REPO, compose
from ucdir.evaluate import run


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "UCDIR_WEIGHTS_DIR": None,
        "TORCH_HOME": str(tmp_path / "torch_home"),  # empty caches; nothing may download
        "UCDIR_LOG_DIR": str(tmp_path / "logs"),
    }
    return run_module("ucdir.evaluate", *args, env=env, timeout=600)


def test_model_mode_reports_restoration_and_x_init_with_seconds(
    checkpoint: Path, tmp_path: Path
) -> None:
    cfg = compose(
        "eval",
        [f"ckpt_path={checkpoint}", "sampler.steps=2", "patch=none", "metrics=[psnr,ssim,niqe]"],
    )
    scores = run(cfg, tmp_path / "run")
    restored, x_init, jpeg = scores.rows
    assert jpeg["method"] == "samples input" and "seconds" not in jpeg
    # no sampler= given: the model's own (the run's validation sampler, DPM-Solver++)
    assert restored["sampler"] == "DPMSolverMultistepScheduler" and restored["steps"] == 2
    assert restored["seconds"] > 0 and "seconds" not in x_init
    assert x_init["method"] == f"{restored['method']} x_init"
    assert restored["psnr"] != x_init["psnr"]
    # x_init's row is what `mode=score` gives on the saved x_init images
    gt = tmp_path / "gt"
    gt.mkdir()
    chelsea = REPO / "src" / "ucdir" / "assets" / "samples" / "val" / "chelsea.png"
    # the held-out photo as the samples task serves it: the ground truth of image 00000
    Image.open(chelsea).convert("RGB").save(gt / "00000.png")
    again = run(
        compose(
            "eval",
            [f"restored={tmp_path / 'run' / 'x_init'}", f"gt={gt}", "metrics=[psnr,ssim,niqe]"],
        ),
        tmp_path / "score",
    )
    for metric in ("psnr", "ssim", "niqe"):
        assert abs(again.rows[0][metric] - x_init[metric]) < 1e-4
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["method"] for r in saved] == [restored["method"], x_init["method"], jpeg["method"]]
    # the input row is the JPEG the model restored, scored as the restorations are
    again = run(
        compose(
            "eval",
            [f"restored={tmp_path / 'run' / 'input'}", f"gt={gt}", "metrics=[psnr,ssim,niqe]"],
        ),
        tmp_path / "score_input",
    )
    assert abs(again.rows[0]["psnr"] - jpeg["psnr"]) < 1e-4
    header = (tmp_path / "run" / "results.csv").read_text().splitlines()[0]
    assert header.endswith("seconds,images,patches") or "seconds" in header


def test_model_mode_with_guidance_and_k_samples_scores_their_mean(
    checkpoint: Path, tmp_path: Path
) -> None:
    overrides = [f"ckpt_path={checkpoint}", "sampler.steps=2", "patch=none", "metrics=[psnr]"]
    plain = run(compose("eval", [*overrides, "score_input=false"]), tmp_path / "plain")
    cfg = compose("eval", [*overrides, "guidance=5", "num_samples=3", "score_input=false"])
    scores = run(cfg, tmp_path / "run")
    restored, x_init, mean = scores.rows
    assert mean["method"] == f"{restored['method']} mean-of-3"
    assert scores.protocol["guidance"] == 5.0 and scores.protocol["num_samples"] == 3
    assert restored["psnr"] != plain.rows[0]["psnr"]  # the guidance changed the sample
    assert mean["psnr"] != restored["psnr"] and x_init["psnr"] == plain.rows[1]["psnr"]
    assert (tmp_path / "run" / "mean" / "00000.png").is_file()


def test_a_sampler_sweep_writes_one_combined_table(checkpoint: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = _cli(
        tmp_path,
        "-m",
        f"ckpt_path={checkpoint}",
        "sampler=ddpm,dpmpp,regression",
        "sampler.steps=1,2",
        "patch=none",
        "metrics=[psnr,ssim]",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with open(sweep / "sweep_results.csv") as f:
        rows = list(csv.DictReader(f))
    labels = [r["method"] for r in rows]
    jobs = [
        f"sampler={s} sampler.steps={n}" for s in ("ddpm", "dpmpp", "regression") for n in (1, 2)
    ]
    assert [x for x in labels if "·" not in x] == jobs
    assert labels.count(f"{jobs[0]} · x_init") == 1  # the same x_init in every job: once
    assert labels.count(f"{jobs[0]} · input") == 1  # and the same JPEG input
    assert all(r["seconds"] for r in rows if "·" not in r["method"])
    assert "| sampler=ddpm sampler.steps=1 |" in out.stdout
    assert (sweep / "sweep_results.md").read_text() in out.stdout


def test_scoring_images_too_small_for_niqe_reports_the_rest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for folder in ("restored", "gt"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / folder / f"{i}.png")
    out = _cli(
        tmp_path,
        "mode=score",
        f"restored={tmp_path / 'restored'}",
        f"gt={tmp_path / 'gt'}",
        "metrics=[niqe,psnr,ssim]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "run" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["NIQE"] == "" and float(row["PSNR"]) > 0 and float(row["SSIM"]) < 1
    assert "**niqe** not computed: 3 of 3 images are too small" in out.stdout
