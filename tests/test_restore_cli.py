"""`python -m ucdir.restore` on a folder of mixed images with a checkpoint from a tiny run."""

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

import ucdir
from tests.commands import run_module


def restore_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return run_module(
        "ucdir.restore",
        *args,
        f"hydra.run.dir={tmp_path / 'hydra'}",
        "sampler=dpmpp",
        "sampler.steps=2",
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs")},
    )


def make_inputs(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = (rng.random((45, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "eight.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=80)
    Image.fromarray(rgb).save(folder / "scan.tiff")
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    import cv2

    cv2.imwrite(str(folder / "deep.png"), (rng.random((40, 33, 3)) * 65535).astype(np.uint16))


def test_restores_a_folder_of_mixed_images(checkpoint: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    make_inputs(src)
    result = restore_cli(
        f"ckpt_path={checkpoint}",
        f"input={src}",
        f"output={out}",
        "num_samples=2",
        "patch.tile=32",
        "patch.overlap=8",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for stem, size in (
        ("eight", (70, 45)),
        ("photo", (70, 45)),
        ("scan", (70, 45)),
        ("grey", (70, 45)),
        ("deep", (33, 40)),
    ):
        with Image.open(out / f"{stem}.png") as im:
            assert im.size == size and im.mode == "RGB"
        assert (out / f"{stem}_mean.png").is_file() and (out / f"{stem}_std.png").is_file()
        side = json.loads((out / f"{stem}.json").read_text())
        assert side["seed"] == 0 and side["steps"] == 2 and len(side["checkpoint_sha256"]) == 64
        assert side["patch"]["tile"] == 32 and side["ucdir_version"]
        assert side["sampler"] == "DPMSolverMultistepScheduler" and side["config"]["input"]


def test_refuses_to_overwrite_inputs(checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_inputs(src)
    before = (src / "eight.png").read_bytes()
    result = restore_cli(
        f"ckpt_path={checkpoint}", f"input={src}", f"output={src}", tmp_path=tmp_path
    )
    assert result.returncode != 0 and "refusing to write over input" in result.stderr
    assert (src / "eight.png").read_bytes() == before


def test_unreadable_file_is_reported_and_the_rest_restored(
    checkpoint: Path, tmp_path: Path
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    make_inputs(src)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = restore_cli(
        f"ckpt_path={checkpoint}", f"input={src}", f"output={out}", tmp_path=tmp_path
    )
    assert result.returncode != 0 and "broken.png" in result.stderr
    assert (out / "eight.png").is_file() and not (out / "broken.png").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_inputs(src)
    result = restore_cli(
        f"ckpt_path={tmp_path / 'nope.ckpt'}",
        f"input={src}",
        f"output={tmp_path / 'out'}",
        tmp_path=tmp_path,
    )
    assert result.returncode != 0 and "nope.ckpt" in result.stderr


def test_evaluate_a_checkpoint_on_a_task(checkpoint: Path, tmp_path: Path) -> None:
    result = run_module(
        "ucdir.evaluate",
        f"ckpt_path={checkpoint}",
        "task=samples",
        "metrics=[psnr,ssim]",
        "sampler=dpmpp",
        "sampler.steps=2",
        "limit=1",
        f"hydra.run.dir={tmp_path / 'eval'}",
        check=True,
    )
    for name in ("results.md", "results.csv", "per_image.csv", "protocol.json"):
        assert (tmp_path / "eval" / name).is_file()
    assert (tmp_path / "eval" / "restored" / "00000.png").is_file()
    # the printed table is results.md, and its PSNR of the restoration and of the input are
    # those of the saved 8-bit images against the held-out photo, computed here by hand
    table = (tmp_path / "eval" / "results.md").read_text().strip()
    assert table in result.stdout
    header, _, *lines = (line.strip("|").split("|") for line in table.splitlines())
    column = [c.strip() for c in header].index("PSNR ↑")
    printed = {cells[0].strip(): cells[column].strip() for cells in lines}
    gt_path = Path(ucdir.__file__).parent / "assets" / "samples" / "val" / "chelsea.png"
    with Image.open(gt_path) as im:
        gt = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    for row, folder in (("samples:last", "restored"), ("samples input", "input")):
        with Image.open(tmp_path / "eval" / folder / "00000.png") as im:
            image = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
        psnr = 10 * np.log10(1 / np.mean((image - gt) ** 2))
        assert printed[row] == f"{psnr:.2f}", (row, printed, psnr)
