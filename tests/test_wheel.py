"""A non-editable install works from any directory: the wheel carries the configs and assets."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.mark.slow
def test_the_wheel_runs_every_entry_point_from_an_unrelated_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCDIR_")}
    # build from a copy of what the build reads, so that no build/ folder lands in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("src", "configs"):
        skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "local")
        shutil.copytree(REPO / name, source / name, ignore=skip)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("ucdir-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ucdir/configs/train.yaml",
        "ucdir/configs/model/ucdir.yaml",
        "ucdir/configs/sampler/ddpm.yaml",
        "ucdir/assets/samples/val/chelsea.png",
        "ucdir/assets/niqe/niqe_pris_params.npz",
        "ucdir/assets/models/jpeg-cpu/model.safetensors",
        "ucdir/assets/models/jpeg-cpu-regression/config.json",
        "ucdir/assets/models/jpeg-cpu-distilled/model.safetensors",
        "ucdir/configs/experiment/jpeg_cpu_distill.yaml",
    ):
        assert needed in names, needed
    assert not any(n.startswith("ucdir/configs/local/") for n in names)
    # a throwaway environment: the wheel installed into it, the dependencies borrowed from this
    # one through a .pth (its editable ucdir is not: .pth files of a borrowed folder don't run)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    target = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            tmp_path,
            env,
        ).stdout.strip()
    )
    (target / "borrowed_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        tmp_path,
        env,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(python), "-c", "import ucdir; print(ucdir.__file__)"], work, env).stdout
    assert where.startswith(str(target)), where
    stats = _run([str(python), "-m", "ucdir.stats", "input_size=32"], work, env)
    assert '"predictor": 7760163' in stats.stdout
    _run(
        [str(python), "-m", "ucdir.train", "task=samples", "debug=tiny", "hydra.run.dir=run"],
        work,
        env,
    )
    ckpt = work / "run" / "checkpoints" / "last.ckpt"
    photo = target / "ucdir" / "assets" / "samples" / "val" / "chelsea.png"
    _run(
        [
            str(python),
            "-m",
            "ucdir.restore",
            f"ckpt_path={ckpt}",
            f"input={photo}",
            "output=restored",
            "sampler.steps=2",
        ],
        work,
        env,
    )
    assert (work / "restored" / "chelsea.png").is_file()
    score = _run(
        [
            str(python),
            "-m",
            "ucdir.evaluate",
            "mode=score",
            "restored=restored",
            f"gt={photo.parent}",
            "metrics=[psnr,ssim]",
        ],
        work,
        env,
    )
    assert "| restored |" in score.stdout
    # the shipped model, by name, on a JPEG photo (the README's first restore command)
    jpeg = work / "photo.jpg"
    from PIL import Image

    Image.open(photo).convert("RGB").save(jpeg, quality=10)
    _run(
        [
            str(python),
            "-m",
            "ucdir.restore",
            "pretrained=jpeg-cpu",
            f"input={jpeg}",
            "output=shipped",
            "sampler=dpmpp",
            "sampler.steps=2",
        ],
        work,
        env,
    )
    assert (work / "shipped" / "photo.png").is_file()
