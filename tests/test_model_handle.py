"""One model handle, one restore session: every entry point loads through `load_model` and
restores through `RestoreSession`, with the model's own sampler unless one is chosen; `restore`
takes any tiling; no in-function import is left to dodge an import cycle."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, compose
from ucdir.diffusion.sampling import DistilledSampler, RegressionSampler, Sampler
from ucdir.loader import load_model
from ucdir.restore.core import restore
from ucdir.restore.session import RestoreSession

STUDENT = "jpeg-cpu-distilled"


def photo(path: Path, size: tuple[int, int] = (40, 48)) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def restore_sidecar(tmp_path: Path, *overrides: str) -> dict:
    from ucdir.restore.cli import run

    src = photo(tmp_path / "in" / "a.png")
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    cfg = compose(
        "restore",
        [
            f"pretrained={STUDENT}",
            f"input={src}",
            f"output={out}",
            "patch=none",
            f"paths.output_dir={tmp_path}",
            *overrides,
        ],
    )
    run(cfg)
    return json.loads((out / "a.json").read_text())


def test_the_restore_command_uses_the_models_own_sampler_unless_one_is_chosen(
    tmp_path: Path,
) -> None:
    own = restore_sidecar(tmp_path)
    assert (own["sampler"], own["steps"]) == ("distilled-1", 1)  # not the 50-step DDPM
    two = restore_sidecar(tmp_path, "sampler.steps=2")  # the own sampler, its steps changed
    assert (two["sampler"], two["steps"]) == ("distilled-2", 2)
    chosen = restore_sidecar(tmp_path, "sampler=ddpm", "sampler.steps=3")
    assert (chosen["sampler"], chosen["steps"]) == ("DDPMScheduler", 3)
    assert own["model"]["sampler"]["_target_"].endswith("DistilledSampler")


def test_evaluate_and_the_app_use_the_models_own_sampler(tmp_path: Path) -> None:
    from ucdir.app.engine import Choices, ModelAllowList, restore_upload
    from ucdir.evaluate import run

    cfg = compose(
        "eval",
        [f"pretrained={STUDENT}", "limit=1", "patch=none", "metrics=[psnr]", "score_x_init=false"],
    )
    row = run(cfg, tmp_path / "eval").rows[0]
    assert (row["sampler"], row["steps"]) == ("distilled-1", 1)
    result = restore_upload(
        photo(tmp_path / "up.png"),
        Choices(STUDENT, patch="none"),
        tmp_path / "app",
        models=ModelAllowList.of(STUDENT),
        max_pixels=10**6,
    )
    assert (result.sidecar["sampler"], result.sidecar["steps"]) == ("distilled-1", 1)
    assert "sampler=" not in result.command  # the command reproduces it with the own sampler


def test_one_loader_for_checkpoints_and_exported_folders(checkpoint: Path, tmp_path: Path) -> None:
    from ucdir.export import export

    trained = load_model(ckpt_path=checkpoint)
    exported = load_model(pretrained=str(export(checkpoint, tmp_path / "model")))
    assert trained.sampler_config == exported.sampler_config
    assert trained.source == {"ckpt_path": str(checkpoint), "pretrained": None}
    assert exported.source["pretrained"] == str(tmp_path / "model")
    for a, b in zip(trained.state_dict().values(), exported.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outs = [RestoreSession.of(m, seed=3)(lq).restored for m in (trained, exported)]
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    assert len(trained.sha256) == 64 and trained.config["sampler"] == trained.sampler_config
    with pytest.raises(ValueError, match="exactly one of"):
        load_model(ckpt_path=checkpoint, pretrained="jpeg-cpu")


def test_a_regression_model_always_makes_one_forward_and_a_student_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    twin = load_model(pretrained="jpeg-cpu-regression")
    ddpm = compose("restore", ["sampler=ddpm", "input=x", "output=y"]).sampler
    assert isinstance(twin.sampler_for(ddpm), RegressionSampler)
    student = load_model(pretrained=STUDENT)
    assert isinstance(student.sampler_for(None), DistilledSampler)
    with caplog.at_level("WARNING"):
        assert isinstance(student.sampler_for(ddpm), Sampler)
    assert "trained for its own few-step sampler" in caplog.text


def test_restore_takes_any_tiling_through_one_protocol() -> None:
    """A tiling is any object with resolve / predict / sample: `restore` asks no type."""
    calls: list[str] = []

    class Halves:
        def resolve(self, denoiser, lq, scalars, scale):
            calls.append("resolve")
            return self

        def predict(self, predictor, lq):
            calls.append("predict")
            return torch.cat([predictor(lq[..., :16]), predictor(lq[..., 16:])], dim=-1)

        def sample(self, sampler, eps_fn, cond, generator, callback=None):
            calls.append("sample")
            x_T = sampler.initial_noise(tuple(cond.x_init.shape), cond.x_init, generator)
            return sampler(eps_fn, x_T, cond, generator=generator, callback=callback)

    model = load_model(pretrained="jpeg-cpu")
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = restore(lq, model.predictor, model.denoiser, model.sampler_for(None), Halves())
    assert calls == ["resolve", "predict", "sample"] and out.restored.shape == lq.shape
    source = (REPO / "src" / "ucdir" / "restore" / "core.py").read_text()
    assert "isinstance" not in source


LAZY_IMPORTS = {
    "__init__.py": "`import ucdir` stays light: the metrics (torch) load when the resolver runs",
    "app/__main__.py": "gradio reads its environment when imported: set it first",
    "overrides.py": "the metrics package is heavy and only some commands need it",
}


def test_no_import_inside_a_function_dodges_a_cycle() -> None:
    """Package imports sit at the top of each module (the package has no import cycle); the
    only in-function ones are the lazy imports named above, and the benchmarks'."""
    src = REPO / "src" / "ucdir"
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel.startswith("bench/") or rel in LAZY_IMPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("ucdir"):
                    found.append(f"{rel}:{inner.lineno} from {inner.module}")
    assert not found, found
