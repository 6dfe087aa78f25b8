"""Network interpolation at export (`blend.*`): (1 − w) × one model + w × another of the same
networks, weight by weight, with the card saying so; other networks and bad weights refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.commands import run_module
from tests.test_hostile_models import TINY_DENOISER, model_config, write_folder
from ucdir.export import blend_models, export
from ucdir.hub import UCDIR


def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    first = UCDIR(**model_config()).state_dict()
    second = {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in first.items()}
    return (
        write_folder(tmp_path / "a", model_config(), first),
        write_folder(tmp_path / "b", model_config(), second),
    )


@pytest.mark.parametrize("weight", [0.25, 1.0])
def test_the_blend_is_the_weighted_mean_of_both_models(tmp_path: Path, weight: float) -> None:
    a, b = _two_models(tmp_path)
    out = export(
        None, tmp_path / "out", pretrained=str(a), blend={"pretrained": str(b), "weight": weight}
    )
    mixed, first, second = (UCDIR.load(p).state_dict() for p in (out, a, b))
    assert mixed.keys() == first.keys()
    changed = 0
    for key, value in mixed.items():
        expected = (1 - weight) * first[key] + weight * second[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)
        changed += not torch.equal(value, first[key])
    assert changed > 10
    card = (out / "README.md").read_text()
    assert f"{1 - weight:g} × this run + {weight:g} × `{b}`" in card
    assert "No validation of these weights" in card


def test_each_network_takes_its_own_share(tmp_path: Path) -> None:
    a, b = _two_models(tmp_path)
    blend = {"pretrained": str(b), "weight": 0.5, "predictor": 0.0, "denoiser": 1.0}
    out = export(None, tmp_path / "out", pretrained=str(a), blend=blend)
    mixed, first, second = (UCDIR.load(p) for p in (out, a, b))
    for role, expected in (("predictor", first), ("denoiser", second)):
        theirs = getattr(expected, role).state_dict()
        for key, value in getattr(mixed, role).state_dict().items():
            assert torch.equal(value, theirs[key]), (role, key)
    card = (out / "README.md").read_text()
    assert f"initial predictor 1 × this run + 0 × `{b}`, diffusion network 0 × this run" in card
    half = export(None, tmp_path / "half", pretrained=str(a), blend={**blend, "predictor": None})
    torch.testing.assert_close(
        UCDIR.load(half).predictor.state_dict(),
        {
            k: (v + second.predictor.state_dict()[k]) / 2
            for k, v in first.predictor.state_dict().items()
        },
    )


def test_a_blend_restores_between_its_two_models(tmp_path: Path) -> None:
    a, b = _two_models(tmp_path)
    out = export(
        None, tmp_path / "out", pretrained=str(a), blend={"pretrained": str(b), "weight": 0.5}
    )
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    models = [UCDIR.load(p) for p in (a, out, b)]
    x_init = [m.predictor(lq) for m in models]
    assert not torch.allclose(x_init[0], x_init[2])
    assert not torch.allclose(x_init[1], x_init[0]) and not torch.allclose(x_init[1], x_init[2])


@pytest.mark.parametrize(
    "blend, message",
    [
        ({"pretrained": "b", "weight": 1.5}, r"blend\.weight must lie in \[0, 1\], got 1\.5"),
        ({"pretrained": "b", "weight": -0.1}, r"blend\.weight must lie in \[0, 1\]"),
        (
            {"weight": 0.3},
            r"blend\.weight \(or blend\.predictor / blend\.denoiser\) needs the other model",
        ),
        ({"pretrained": "b"}, r"give blend\.weight=w"),
        ({"pretrained": "b", "ckpt_path": "c", "weight": 0.3}, "not both"),
        ({"pretrained": "missing", "weight": 0.3}, "missing"),
        ({"pretrained": "b", "denoiser": 2}, r"blend\.denoiser must lie in \[0, 1\], got 2"),
        ({"pretrained": "b", "predictor": "half"}, r"blend\.predictor must be a number"),
        ({"denoiser": 0.5}, "needs the other model"),
    ],
)
def test_bad_blends_are_refused_and_write_nothing(
    tmp_path: Path, blend: dict, message: str
) -> None:
    a, _ = _two_models(tmp_path)
    blend = {
        k: str(tmp_path / v) if k in ("pretrained", "ckpt_path") else v for k, v in blend.items()
    }
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        export(None, tmp_path / "out", pretrained=str(a), blend=blend)
    assert not (tmp_path / "out").exists()


def test_models_of_other_networks_are_refused_with_the_setting_named(tmp_path: Path) -> None:
    a, _ = _two_models(tmp_path)
    wider = {**model_config(), "denoiser": {**TINY_DENOISER, "width": 16}}
    other = UCDIR(**wider)
    b = write_folder(tmp_path / "wide", wider, other.state_dict())
    with pytest.raises(ValueError, match=r"other networks: denoiser\.width is 8 here, 16 in"):
        export(
            None, tmp_path / "out", pretrained=str(a), blend={"pretrained": str(b), "weight": 0.5}
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="must lie in"):
        blend_models(UCDIR.load(a), UCDIR.load(a), {"denoiser": float("nan")})


def test_the_export_command_blends(tmp_path: Path) -> None:
    a, b = _two_models(tmp_path)
    out = run_module(
        "ucdir.export",
        f"pretrained={a}",
        f"blend.pretrained={b}",
        "blend.weight=0.2",
        f"output={tmp_path / 'm'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["denoiser"]["width"] == TINY_DENOISER["width"]
    assert "0.8 × this run + 0.2 ×" in (tmp_path / "m" / "README.md").read_text()
    bad = run_module(
        "ucdir.export",
        f"pretrained={a}",
        "blend.weight=0.2",
        f"output={tmp_path / 'n'}",
        f"hydra.run.dir={tmp_path / 'run2'}",
        env={"UCDIR_LOG_DIR": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1"},
    )
    assert bad.returncode != 0 and "needs the other model" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (tmp_path / "n").exists()
