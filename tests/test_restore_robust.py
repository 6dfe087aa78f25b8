"""`python -m ucdir.restore` loses nothing on bad input or a kill: bad files are reported and the
rest restored, the output folder and the options are checked before anything is computed, an
interrupted run leaves no litter and continues with `skip_existing=true`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import ucdir.atomic
from tests.bad_files import bomb_png
from tests.commands import run_module
from tests.conftest import compose
from ucdir.restore import cli
from ucdir.restore import session as session_module
from ucdir.restore.outputs import is_done


def restore_cfg(*overrides: str) -> Any:
    """The config of `python -m ucdir.restore <overrides>` (Hydra's run folder unused here)."""
    fast = ["sampler=dpmpp", "sampler.steps=2", "patch=none", "paths.output_dir=unused"]
    return compose("restore", [*fast, *overrides])


def photos(folder: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(
            folder / f"{name}.png"
        )
    return folder


def counting_restore(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images `run` computes."""
    calls: list[int] = []
    real = session_module.restore

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "restore", counted)
    return calls


def test_a_decompression_bomb_is_reported_and_the_rest_restored(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, out = photos(tmp_path / "in", ("b", "c")), tmp_path / "out"
    bomb_png(src / "a_bomb.png")  # first in the folder's order
    cfg = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match=r"1 file\(s\).*a_bomb"):
        cli.run(cfg)
    assert "max_pixels=" in caplog.text
    assert is_done(out / "b.png", 1) and is_done(out / "c.png", 1)
    assert not (out / "a_bomb.png").exists() and not (out / "a_bomb.json").exists()


def test_the_output_is_checked_before_the_model_is_loaded(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_now(*args: Any) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("ucdir.restore.session.load_model", not_now)
    src, a_file = photos(tmp_path / "in"), tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    for output in (a_file, a_file / "restored"):
        cfg = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={output}")
        with pytest.raises(NotADirectoryError, match=r"output=.*notes\.txt"):
            cli.run(cfg)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_output_folder_is_refused_before_the_model_is_loaded(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ucdir.restore.session.load_model", lambda *a: pytest.fail("loaded"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        cfg = restore_cfg(
            f"ckpt_path={checkpoint}", f"input={photos(tmp_path / 'in')}", f"output={locked}"
        )
        with pytest.raises(PermissionError, match=r"output=.*locked.*not writable"):
            cli.run(cfg)
    finally:
        locked.chmod(0o700)


def test_an_unwritable_output_is_found_by_a_real_write_before_any_compute(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What even root meets (a read-only filesystem, ACLs): the probe write fails."""

    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(session_module, "restore", lambda *a, **k: pytest.fail("computed an image"))
    monkeypatch.setattr("ucdir.restore.outputs.tempfile.TemporaryFile", read_only)
    cfg = restore_cfg(
        f"ckpt_path={checkpoint}", f"input={photos(tmp_path / 'in')}", f"output={tmp_path / 'o'}"
    )
    with pytest.raises(PermissionError, match=r"output=.*Read-only file system"):
        cli.run(cfg)


def test_bad_options_create_nothing(checkpoint: Path, tmp_path: Path) -> None:
    src, out = photos(tmp_path / "in"), tmp_path / "out"
    missing = restore_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}", f"input={src}", f"output={out}")
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        cli.run(missing)
    twelve = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}", "bits=12")
    with pytest.raises(ValueError, match=r"bits must be 8 or 16.*12"):
        cli.run(twelve)
    assert not out.exists()


def test_an_interrupted_run_leaves_no_litter_and_continues(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = photos(tmp_path / "in"), tmp_path / "out"
    real_replace = os.replace

    def killed_at_b(src_path: Any, dst: Any) -> None:
        if Path(dst).name == "b.png":
            raise KeyboardInterrupt  # Ctrl-C / SIGTERM while b.png is being written
        real_replace(src_path, dst)

    cfg = restore_cfg(f"ckpt_path={checkpoint}", f"input={src}", f"output={out}")
    with monkeypatch.context() as patch:
        patch.setattr(ucdir.atomic.os, "replace", killed_at_b)
        with pytest.raises(KeyboardInterrupt):
            cli.run(cfg)
    left = sorted(p.name for p in out.iterdir())
    assert left == ["a.json", "a.png", "b.json"], left  # the sidecar first, the PNG last
    assert is_done(out / "a.png", 1) and not is_done(out / "b.png", 1)

    with pytest.raises(FileExistsError, match="skip_existing=true"):
        cli.run(cfg)
    (out / ".c.png.partial-x7q2").write_bytes(b"left by kill -9")
    calls = counting_restore(monkeypatch)
    resumed = restore_cfg(
        f"ckpt_path={checkpoint}", f"input={src}", f"output={out}", "skip_existing=true"
    )
    assert cli.run(resumed) == [out / "a.png", out / "b.png", out / "c.png"]
    assert len(calls) == 2  # b and c; a was done
    assert sorted(p.name for p in out.iterdir()) == [
        f"{n}.{e}" for n in "abc" for e in ("json", "png")
    ]
    assert json.loads((out / "b.json").read_text())["input"] == str(src / "b.png")


def test_a_value_with_a_space_split_by_the_shell_gets_the_quoting_hint(tmp_path: Path) -> None:
    result = run_module(
        "ucdir.restore", "ckpt_path=x.ckpt", "input=my", "photos/a.png",
        timeout=300, env={"UCDIR_LOG_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "'photos/a.png'" in result.stderr
    assert """'input="my photos/a.png"'""" in result.stderr
