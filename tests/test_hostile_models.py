"""A model file is data: hostile `config.json`s, checkpoints and weights run nothing, allocate
nothing beyond the bounds, and are refused with the key named, through every entry point."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests.commands import run_module
from tests.conftest import REPO
from ucdir.callbacks.config import CONFIG_KEY
from ucdir.from_file import ALLOWED, Limits, UnsafeConfigError, build, build_networks, check
from ucdir.hub import SHIPPED_DIR, UCDIR, load_weights, read_config, shipped_models

TINY_PREDICTOR = {"_target_": "ucdir.models.predictor.InitialPredictor", "width": 4}
TINY_DENOISER = {
    "_target_": "ucdir.models.denoiser.ConditionalUNet",
    "width": 8,
    "mults": [1, 2],
    "blocks": 1,
    "attn_levels": [1],
    "kernels": 2,
    "dropout": 0.0,
}
SAMPLER = json.loads((SHIPPED_DIR / "jpeg-cpu" / "config.json").read_text())["sampler"]


def gadgets(marker: Path) -> dict[str, Callable[[dict], dict]]:
    """Ways a hostile config reached code before: each returns a poisoned copy of a model config
    ({predictor, denoiser, sampler, task}) whose payload would create `marker`."""
    shell = f"touch {marker}"
    system = {"_target_": "ucdir.models.denoiser.torch.os.system", "_args_": [shell]}
    # runs on hydra-core 1.3.8, whose own blocklist stops os.system: exec of a string from the file
    source = f"open({str(marker)!r}, 'w').close()"
    fx_exec = {
        "_target_": "ucdir.models.denoiser.torch.fx.graph_module._exec_with_source",
        "_args_": [source, {}],
        "_convert_": "all",
    }
    run = {
        "_target_": "ucdir.models.denoiser.torch.utils.cpp_extension.subprocess.run",
        "_args_": [["touch", str(marker)]],
    }

    def replace(part: str, node: dict) -> Callable[[dict], dict]:
        return lambda c: {**c, part: node}

    def inside(part: str, key: str, node: Any) -> Callable[[dict], dict]:
        return lambda c: {**c, part: {**c[part], key: node}}

    return {
        # a prefix check passes these: Hydra resolves each dotted segment with getattr
        "predictor exec via ucdir.models.": replace("predictor", fx_exec),
        "sampler exec via diffusers.": replace(
            "sampler",
            {
                **fx_exec,
                "_target_": "diffusers.utils.torch_utils.torch.fx.graph_module._exec_with_source",
            },
        ),
        "predictor os.system via ucdir.models.": replace("predictor", system),
        "denoiser subprocess.run via ucdir.models.": replace("denoiser", run),
        "sampler os.system via diffusers.": replace(
            "sampler", {"_target_": "diffusers.utils.logging.os.system", "_args_": [shell]}
        ),
        "scheduler _partial_ subprocess.run": inside(
            "sampler", "scheduler", {**run, "_partial_": True}
        ),
        "schedule os.system": inside("sampler", "schedule", system),
        # a nested config inside an allowed class's argument (Hydra builds it recursively)
        "nested in aux_scalars": inside("denoiser", "aux_scalars", [system]),
        "nested in width": inside("predictor", "width", system),
        # Hydra's special keys on an allowed class
        "_args_ on an allowed class": inside("predictor", "_args_", [3, 3, 4]),
        "_convert_": inside("denoiser", "_convert_", "all"),
        "_recursive_": inside("denoiser", "_recursive_", False),
        # an OmegaConf interpolation is text, never resolved
        "interpolation": inside("denoiser", "aux_scalars", ["${oc.env:HOME}"]),
        "target in task": replace("task", {"name": "jpeg", "x": system}),
    }


def model_config() -> dict:
    return {"predictor": TINY_PREDICTOR, "denoiser": TINY_DENOISER, "sampler": SAMPLER, "task": {}}


def write_folder(
    folder: Path, config: dict, weights: dict[str, torch.Tensor] | None = None
) -> Path:
    """An exported-model folder with `config` and (by default) the weights of the tiny model."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights is None:
        weights = UCDIR(TINY_PREDICTOR, TINY_DENOISER).state_dict()
    save_file({k: v.contiguous() for k, v in weights.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_checkpoint(path: Path, model: dict, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A training checkpoint whose stored run config holds `model` (plain data only)."""
    if state is None:
        state = UCDIR(TINY_PREDICTOR, TINY_DENOISER).state_dict()
    torch.save({"state_dict": state, CONFIG_KEY: {"model": model, "task": {}}}, path)
    return path


def test_every_shipped_model_loads_through_the_allow_list() -> None:
    for name in shipped_models():
        model = UCDIR.load(name)
        assert model.default_sampler() is not None
        assert model.sampler_config["_target_"] in ALLOWED["sampler"]


def test_the_repository_sampler_configs_pass() -> None:
    """Every configs/sampler option, as a checkpoint stores it, is allowed (the legacy
    `_partial_: true` scheduler form included)."""
    from omegaconf import OmegaConf

    from tests.conftest import compose

    for path in sorted((REPO / "configs" / "sampler").glob("*.yaml")):
        if path.stem == "model":  # no class: the model's own sampler (config.json)
            continue
        cfg = compose("restore", [f"sampler={path.stem}", "input=x", "output=y"])
        node = OmegaConf.to_container(cfg.sampler, resolve=True)
        assert build(node, "sampler", path.stem).steps >= 1


@pytest.mark.parametrize("gadget", list(gadgets(Path("m"))))
def test_a_hostile_config_json_runs_nothing(tmp_path: Path, gadget: str) -> None:
    marker = tmp_path / "pwned"
    folder = write_folder(tmp_path / "model", gadgets(marker)[gadget](model_config()))
    with pytest.raises(UnsafeConfigError, match=r"config\.json: "):
        UCDIR.load(folder)
    assert not marker.exists()


def _entry_points(folder: Path, ckpt: Path, out: Path) -> dict[str, Callable[[], Any]]:
    from tests.conftest import compose
    from ucdir.export import export
    from ucdir.loader import load_model
    from ucdir.train import build as build_run

    good = str(write_folder(out / "good", model_config()))
    return {
        "restore pretrained=": lambda: load_model(pretrained=str(folder)),
        "restore/evaluate ckpt_path=": lambda: load_model(ckpt_path=ckpt),
        "export": lambda: export(ckpt, out / "export"),
        "train pretrained=": lambda: build_run(
            compose("train", ["debug=tiny", f"pretrained={folder}", f"paths.output_dir={out}"])
        ),
        "UCDIR.from_pretrained": lambda: UCDIR.from_pretrained(str(folder)),
        "export blend.pretrained=": lambda: export(
            None, out / "b1", pretrained=good, blend={"pretrained": str(folder), "weight": 0.5}
        ),
        "export blend.ckpt_path=": lambda: export(
            None, out / "b2", pretrained=good, blend={"ckpt_path": str(ckpt), "weight": 0.5}
        ),
    }


@pytest.mark.parametrize("gadget", ["predictor exec via ucdir.models.", "nested in width"])
def test_every_entry_point_refuses_a_hostile_model(tmp_path: Path, gadget: str) -> None:
    marker = tmp_path / "pwned"
    poisoned = gadgets(marker)[gadget](model_config())
    folder = write_folder(tmp_path / "model", poisoned)
    ckpt = write_checkpoint(tmp_path / "last.ckpt", poisoned)
    for name, call in _entry_points(folder, ckpt, tmp_path).items():
        with pytest.raises(UnsafeConfigError, match="predictor"):
            call()
        assert not marker.exists(), name


def test_the_restore_command_refuses_a_hostile_model(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = write_folder(
        tmp_path / "model",
        gadgets(marker)["predictor exec via ucdir.models."](model_config()),
    )
    done = run_module(
        "ucdir.restore",
        f"pretrained={folder}",
        f"input={REPO / 'src/ucdir/assets/samples/val'}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=300,
    )
    assert done.returncode != 0
    assert "predictor._target_: refused" in done.stderr, done.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("part", "key", "value", "match"),
    [
        ("denoiser", "width", 2048, "parameters"),  # ~100 G parameters: counted on meta only
        ("denoiser", "width", 4096, r"width: must be in 2\.\.2048"),
        ("denoiser", "blocks", 10**6, r"blocks: must be in 1\.\.16"),
        ("denoiser", "mults", [1] * 100, "mults: must be a list of 1..8"),
        ("predictor", "width", 1024, "parameters"),
        ("predictor", "width", True, "must be an integer"),
        ("denoiser", "dropout", float("nan"), "dropout: must be in"),
        ("denoiser", "norm", "batch", "norm: must be one of"),
        ("denoiser", "fused", True, "not an argument a file may give"),
    ],
)
def test_sizes_and_values_are_bounded_before_allocation(
    tmp_path: Path, part: str, key: str, value: Any, match: str
) -> None:
    config = model_config()
    config[part] = {**config[part], key: value}
    if part == "denoiser" and key == "width" and value == 2048:
        config["denoiser"] = {**TINY_DENOISER, "width": 2048, "mults": [1, 2, 4, 8, 8]}
    folder = write_folder(tmp_path / "model", config)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(UnsafeConfigError, match=match):
        UCDIR.load(folder)
    assert time.perf_counter() - start < 20
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 300, f"{grown_mb:.0f} MB allocated for a refused model"


def test_activation_memory_is_bounded_from_the_config() -> None:
    """Attention at full resolution with a tiny width: few parameters, a 65536² attention map
    per 256² tile."""
    greedy = {**TINY_DENOISER, "attn_levels": [0]}
    with pytest.raises(UnsafeConfigError, match="activations"):
        build_networks(TINY_PREDICTOR, greedy, "x: ", Limits(max_activation_gb=4))
    build_networks(TINY_PREDICTOR, TINY_DENOISER, "x: ", Limits(max_activation_gb=4))


def test_the_limits_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCDIR_MAX_PARAMS", "1000")
    with pytest.raises(UnsafeConfigError, match="UCDIR_MAX_PARAMS"):
        build_networks(TINY_PREDICTOR, TINY_DENOISER, "x: ")
    monkeypatch.setenv("UCDIR_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match="UCDIR_MAX_PARAMS='lots' is not a number"):
        Limits.from_env()


def test_config_json_is_bounded_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big" / "config.json"
    big.parent.mkdir()
    big.write_text(json.dumps({**model_config(), "task": {"pad": "x" * (2 << 20)}}))
    with pytest.raises(UnsafeConfigError, match=r"more than a model.s config\.json may have"):
        read_config(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a valid JSON model config"):
        read_config(deep)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**model_config(), "_target_": "os.system"}))
    with pytest.raises(UnsafeConfigError, match="found"):
        read_config(other)


def _weights() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in UCDIR(TINY_PREDICTOR, TINY_DENOISER).state_dict().items()}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_with_the_tensor_named(tmp_path: Path, value: float) -> None:
    weights = _weights()
    key = sorted(weights)[3]
    weights[key].view(-1)[0] = value
    folder = write_folder(tmp_path / "model", model_config(), weights)
    with pytest.raises(ValueError, match=rf"tensor '{key}' has 1 non-finite value"):
        UCDIR.load(folder)
    from ucdir.loader import load_model

    ckpt = write_checkpoint(tmp_path / "nan.ckpt", model_config(), weights)
    with pytest.raises(ValueError, match="non-finite"):
        load_model(ckpt_path=ckpt)


def test_weights_that_do_not_fit_are_refused_and_load_nothing(tmp_path: Path) -> None:
    model = UCDIR(TINY_PREDICTOR, TINY_DENOISER)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cases: dict[str, tuple[dict[str, torch.Tensor], str]] = {}
    weights = _weights()
    missing = sorted(weights)[-1]
    cases["missing"] = ({k: v for k, v in weights.items() if k != missing}, "is missing")
    cases["extra"] = ({**_weights(), "evil": torch.zeros(1)}, "'evil' is not part")
    shaped = _weights()
    key = sorted(shaped)[0]
    shaped[key] = torch.zeros(1, 2, 3)
    cases["shape"] = (shaped, "has shape")
    for name, (state, match) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
        with pytest.raises(ValueError, match=match):
            load_weights(model, path)
    truncated = tmp_path / "truncated.safetensors"
    save_file({k: v.contiguous() for k, v in _weights().items()}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(model, truncated)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checked_configs_keep_the_exported_form() -> None:
    """What a checked config writes back is what was read (exports stay loadable as before)."""
    config = json.loads((SHIPPED_DIR / "jpeg-cpu" / "config.json").read_text())
    for role in ("predictor", "denoiser", "sampler"):
        assert check(config[role], role, role).as_config() == config[role]  # type: ignore[arg-type]
