"""Models as artifacts: export a checkpoint, load it back (safetensors only), restore with it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.commands import run_module
from tests.conftest import REPO
from ucdir.export import export
from ucdir.hub import UCDIR, PretrainedNotFoundError, resolve_pretrained

PHOTO = REPO / "src" / "ucdir" / "assets" / "samples" / "val" / "chelsea.png"


def _cli(module: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"UCDIR_LOG_DIR": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1"}
    return run_module(module, *args, env=env)


def test_export_writes_weights_config_and_card(checkpoint: Path, tmp_path: Path) -> None:
    out = export(checkpoint, tmp_path / "model", name="tiny-test")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["predictor"]["_target_"] == "ucdir.models.predictor.InitialPredictor"
    assert config["denoiser"]["width"] == 16 and config["task"]["name"] == "samples"
    card = (out / "README.md").read_text()
    assert "library_name: ucdir" in card and "pretrained=tiny-test" in card
    assert "Task: samples" in card and "2305.20049" in card
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export(checkpoint, out)
    half = export(checkpoint, tmp_path / "half", dtype="fp16")
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.55 * (out / "model.safetensors").stat().st_size


def test_loaded_model_has_the_checkpoint_weights(checkpoint: Path, tmp_path: Path) -> None:
    from ucdir.loader import load_model

    model = UCDIR.load(export(checkpoint, tmp_path / "model"))
    trained = load_model(ckpt_path=checkpoint)
    predictor, denoiser = trained.predictor, trained.denoiser
    for mine, theirs in ((model.predictor, predictor), (model.denoiser, denoiser)):
        for (k, a), (_, b) in zip(
            mine.state_dict().items(), theirs.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), k
    assert not model.training


def test_restore_from_the_export_is_bit_identical_to_the_checkpoint(
    checkpoint: Path, tmp_path: Path
) -> None:
    folder = export(checkpoint, tmp_path / "model")
    common = [f"input={PHOTO}", "sampler.steps=3", "patch=none"]
    a = _cli(
        "ucdir.restore",
        f"ckpt_path={checkpoint}",
        *common,
        f"output={tmp_path / 'a'}",
        tmp_path=tmp_path,
    )
    b = _cli(
        "ucdir.restore",
        f"pretrained={folder}",
        *common,
        f"output={tmp_path / 'b'}",
        tmp_path=tmp_path,
    )
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    first = Image.open(tmp_path / "a" / "chelsea.png").tobytes()
    assert first == Image.open(tmp_path / "b" / "chelsea.png").tobytes()
    sidecar = json.loads((tmp_path / "b" / "chelsea.json").read_text())
    assert sidecar["pretrained"] == str(folder) and sidecar["weights"].endswith("model.safetensors")


def test_unknown_pretrained_names_and_offline_hub_ids_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PretrainedNotFoundError, match="no shipped model of that name"):
        resolve_pretrained("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedNotFoundError, match=r"no config\.json"):
        resolve_pretrained(tmp_path / "empty")
    with pytest.raises(PretrainedNotFoundError, match="could not be fetched"):
        UCDIR.load("nobody/ucdir-missing", local_files_only=True)
    out = _cli(
        "ucdir.restore",
        "pretrained=nobody/ucdir-missing",
        f"input={PHOTO}",
        f"output={tmp_path / 'o'}",
        tmp_path=tmp_path,
    )
    assert out.returncode != 0 and "could not be fetched" in out.stderr
    assert not (tmp_path / "o").exists()


def test_export_cli(checkpoint: Path, tmp_path: Path) -> None:
    out = _cli(
        "ucdir.export",
        f"ckpt_path={checkpoint}",
        f"output={tmp_path / 'm'}",
        "dtype=fp16",
        f"hydra.run.dir={tmp_path / 'run'}",
        tmp_path=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_evaluate_takes_pretrained_and_matches_the_checkpoint(
    checkpoint: Path, tmp_path: Path
) -> None:
    from tests.conftest import compose
    from ucdir.evaluate import run

    folder = export(checkpoint, tmp_path / "model")
    common = ["sampler.steps=2", "patch=none", "metrics=[psnr,ssim]"]
    by_ckpt = run(compose("eval", [f"ckpt_path={checkpoint}", *common]), tmp_path / "a")
    by_export = run(compose("eval", [f"pretrained={folder}", *common]), tmp_path / "b")
    for row_a, row_b in zip(by_ckpt.rows, by_export.rows, strict=True):
        assert row_a["psnr"] == row_b["psnr"] and row_a["ssim"] == row_b["ssim"]
    assert by_export.rows[0]["method"] == "samples:model"


def test_train_initialises_from_a_pretrained_model(
    checkpoint: Path, tmp_path: Path, train_cfg
) -> None:
    from ucdir.checkpoints import run_config
    from ucdir.train import build

    folder = export(checkpoint, tmp_path / "model")
    # the model group says width 8 (model=tiny has 16): the pretrained networks win
    cfg = train_cfg(f"pretrained={folder}", "model.denoiser.width=8")
    _, model, _ = build(cfg)
    loaded = UCDIR.load(folder)
    for name, value in loaded.denoiser.state_dict().items():
        assert torch.equal(model.denoiser.state_dict()[name], value), name
    assert cfg.model.denoiser.width == 16  # what the run's checkpoints will record
    assert (
        run_config({"ucdir_config": {"model": dict(cfg.model)}})["model"]["denoiser"]["width"] == 16
    )


def test_a_model_shipped_in_the_package_is_found_by_name(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ucdir.hub as hub

    monkeypatch.setattr(hub, "SHIPPED_DIR", tmp_path / "models")
    export(checkpoint, tmp_path / "models" / "jpeg-test")
    assert hub.shipped_models() == ["jpeg-test"]
    assert resolve_pretrained("jpeg-test") == str(tmp_path / "models" / "jpeg-test")
    model = UCDIR.load("jpeg-test")
    assert model.weights_file == str(tmp_path / "models" / "jpeg-test" / "model.safetensors")
