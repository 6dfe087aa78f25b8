"""The authors' SID release imported (`python -m ucdir.convert`) and written back
(`python -m ucdir.export format=official`), on a release built from the documented layout
(``shared/reference/official-sid-checkpoint-keys.tsv``: every key and shape) with random weights;
no official code."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.commands import run_module
from tests.conftest import REPO, compose
from tests.diffusion.helpers import load_sampler
from tests.diffusion.test_patching import boundary_excess
from ucdir.convert import _plain, convert
from ucdir.diffusion.patching import NaivePatchSplit, PatchSplit, spans
from ucdir.export import export
from ucdir.hub import UCDIR
from ucdir.official import (
    SCHEDULE_BUFFERS,
    OfficialLayoutError,
    convert_state,
    official_state,
    paper_mismatch,
    read_release,
    release_file,
    to_official,
    to_ours,
)
from ucdir.restore import restore

KEYS_TSV = REPO.parent / "shared" / "reference" / "official-sid-checkpoint-keys.tsv"


def documented_layout() -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, kind) of every entry of the release, from the reference listing (or, where
    ../shared is absent, from our default networks through the key map)."""
    if KEYS_TSV.is_file():
        rows = []
        for line in KEYS_TSV.read_text().splitlines():
            if line.startswith("#") or line.startswith("key\t") or not line.strip():
                continue
            key, shape, kind = line.split("\t")
            rows.append((key, tuple(int(s) for s in shape.split("x")), kind))
        return rows
    model = UCDIR(**configs())
    state = {f"predictor.{k}": v for k, v in model.predictor.state_dict().items()}
    state |= {f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()}
    return [(to_official(k), tuple(v.shape), "param") for k, v in state.items()]


def configs() -> dict:
    cfg = compose("convert", ["official=x", "output=y"])
    return {
        "predictor": _plain(cfg.model.predictor),
        "denoiser": _plain(cfg.model.denoiser),
        "sampler": _plain(cfg.sampler),
        "task": _plain(cfg.task),
    }


def random_release(folder: Path, layout, with_raw: bool = False) -> dict[str, torch.Tensor]:
    """A release folder: I_Elatest_gen_ema.pth (every weight of `layout`, ~N(0, 0.02), biases
    included: nothing is zero) [+ a small stand-in I_Elatest_gen.pth holding the schedule
    buffers: the converter never reads it when the EMA file is there]; returns the EMA state."""
    generator = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    ema = {
        k: torch.randn(s, generator=generator) * 0.02 for k, s, kind in layout if kind == "param"
    }
    torch.save(ema, folder / "I_Elatest_gen_ema.pth")
    if with_raw:
        buffers = {b: torch.linspace(1e-6, 0.02, 2000) for b in SCHEDULE_BUFFERS}
        torch.save(buffers, folder / "I_Elatest_gen.pth")
    return ema


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("release")
    return folder, random_release(folder, documented_layout(), with_raw=True)


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(release[0], tmp_path_factory.mktemp("converted") / "sid", configs())


def test_the_key_map_is_a_bijection_onto_the_default_networks_with_equal_shapes() -> None:
    layout = documented_layout()
    params = [(k, s) for k, s, kind in layout if kind == "param"]
    buffers = [k for k, _, kind in layout if kind == "buffer"]
    assert len(params) == 570 and sum(torch.Size(s).numel() for _, s in params) == 105_114_862
    assert not buffers or sorted(buffers) == sorted(SCHEDULE_BUFFERS)
    model = UCDIR(**configs())
    ours = {f"predictor.{k}": v.shape for k, v in model.predictor.state_dict().items()}
    ours |= {f"denoiser.{k}": v.shape for k, v in model.denoiser.state_dict().items()}
    mapped = {to_ours(k): s for k, s in params}
    assert mapped == {k: tuple(s) for k, s in ours.items()}
    assert all(to_official(to_ours(k)) == k for k, _ in params)  # type: ignore[arg-type]


@pytest.mark.slow
def test_convert_then_export_official_is_the_identity_bit_for_bit(
    release, converted: Path, tmp_path: Path
) -> None:
    _, ema = release
    card = (converted / "README.md").read_text()
    assert "I_Elatest_gen_ema.pth" in card and "sRGB" in card and "license: other" in card
    assert "DDPMScheduler, 50 steps" in card
    model = UCDIR.load(converted)
    assert model.default_sampler().steps == 50 and model.task["name"] == "sid"
    back = export(None, tmp_path / "back", format="official", pretrained=converted)
    again = torch.load(back / "I_Elatest_gen_ema.pth", weights_only=True)
    assert sorted(again) == sorted(ema)
    assert all(torch.equal(again[k], ema[k]) and again[k].dtype == torch.float32 for k in ema)


@pytest.mark.slow
def test_the_commands_convert_and_export_back(release, tmp_path: Path) -> None:
    folder, ema = release
    env = {"UCDIR_LOG_DIR": str(tmp_path / "logs")}
    done = run_module(
        "ucdir.convert", f"official={folder}", f"output={tmp_path / 'm'}", env=env, check=True
    )
    said = done.stdout + done.stderr
    assert "read I_Elatest_gen_ema.pth (the EMA weights" in said
    assert "I_Elatest_gen.pth left aside" in said
    run_module("ucdir.export", f"pretrained={tmp_path / 'm'}", f"output={tmp_path / 'o'}",
               "format=official", env=env, check=True)  # fmt: skip
    again = torch.load(tmp_path / "o" / "I_Elatest_gen_ema.pth", weights_only=True)
    assert all(torch.equal(again[k], ema[k]) for k in ema)
    refused = run_module("ucdir.export", "pretrained=jpeg-cpu", f"output={tmp_path / 'j'}",
                         "format=official", env=env)  # fmt: skip
    assert refused.returncode == 1
    assert "format=official: predictor.width: 16, the paper's 32" in refused.stderr


def test_the_paper_networks_are_the_default_model_config() -> None:
    given = configs()
    assert paper_mismatch(given["predictor"], given["denoiser"]) is None
    assert paper_mismatch(given["predictor"], {**given["denoiser"], "kernels": 4}) == (
        "denoiser.kernels: 4, the paper's 8"
    )


def test_the_raw_file_drops_its_schedule_buffers_and_a_module_prefix_is_stripped() -> None:
    model = UCDIR(**configs())
    expected = {f"predictor.{k}": v.shape for k, v in model.predictor.state_dict().items()}
    expected |= {f"denoiser.{k}": v.shape for k, v in model.denoiser.state_dict().items()}
    state = official_state({k: torch.zeros(s) for k, s in expected.items()})
    raw = {"module." + k: v for k, v in state.items()}
    raw |= {"module." + b: torch.zeros(2000) for b in SCHEDULE_BUFFERS}
    ours, notes = convert_state(raw, expected, "official: x")
    assert set(ours) == set(expected)
    assert notes == [
        "stripped the 'module.' prefix (a DataParallel/DDP state dict)",
        "dropped the 12 noise-schedule buffers (not weights)",
    ]


def test_each_wrong_file_gets_its_own_clear_error(tmp_path: Path) -> None:
    model = UCDIR(**configs())
    expected = {f"predictor.{k}": v.shape for k, v in model.predictor.state_dict().items()}
    expected |= {f"denoiser.{k}": v.shape for k, v in model.denoiser.state_dict().items()}
    state = official_state({k: torch.zeros(s) for k, s in expected.items()})
    # another architecture: a key the authors' model does not have
    with pytest.raises(OfficialLayoutError, match=r"denoise_fn\.downs\.1\.res_block\.extra\.w"):
        convert_state({**state, "denoise_fn.downs.1.res_block.extra.w": torch.zeros(1)},
                      expected, "official: x")  # fmt: skip
    # another width: the first tensor whose shape differs is named with both shapes
    narrow = dict(state)
    narrow["denoise_fn.downs.0.weight"] = torch.zeros(32, 6, 3, 3)
    with pytest.raises(
        OfficialLayoutError, match=r"downs\.0\.weight has shape 32x6x3x3, .*64x6x3x3"
    ):
        convert_state(narrow, expected, "official: x")
    # a truncated state dict: the first missing key in the official name
    partial = {k: v for k, v in state.items() if not k.startswith("predictor.conv10")}
    with pytest.raises(OfficialLayoutError, match=r"predictor\.conv10_1\.weight is missing"):
        convert_state(partial, expected, "official: x")
    # files: the optimizer state, a truncated file, a text file, a pickle with code, no weights
    torch.save({"state": {}, "param_groups": []}, tmp_path / "opt.pth")
    with pytest.raises(OfficialLayoutError, match="optimizer state"):
        read_release(tmp_path / "opt.pth")
    torch.save({"a": torch.zeros(1000)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(OfficialLayoutError, match=r"not a torch\.save file"):
        read_release(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_text("weights")
    with pytest.raises(OfficialLayoutError, match=r"not a torch\.save file"):
        read_release(tmp_path / "text.pth")
    torch.save({"a": torch.zeros(2, dtype=torch.int64)}, tmp_path / "ints.pth")
    with pytest.raises(OfficialLayoutError, match=r"is torch\.int64, not float"):
        read_release(tmp_path / "ints.pth")
    torch.save({"a": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(OfficialLayoutError, match="entry 'a' is a list, not a tensor"):
        read_release(tmp_path / "list.pth")
    (tmp_path / "only_opt").mkdir()
    torch.save({"state": {}, "param_groups": []}, tmp_path / "only_opt" / "I_Elatest_opt.pth")
    with pytest.raises(OfficialLayoutError, match=r"holds only I_Elatest_opt\.pth"):
        release_file(tmp_path / "only_opt")
    with pytest.raises(FileNotFoundError, match=r"has neither I_Elatest_gen_ema\.pth"):
        release_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        release_file(tmp_path / "nowhere")


def test_a_file_over_the_bound_and_non_finite_weights_are_refused_before_anything_is_written(
    release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, ema = release
    nan = dict(ema)
    key = "denoise_fn.ups.2.res_block.noise_func.2.weight"
    assert key in nan
    nan[key] = nan[key].clone()
    nan[key].view(-1)[7] = float("nan")
    (tmp_path / "nan").mkdir()
    torch.save(nan, tmp_path / "nan" / "I_Elatest_gen_ema.pth")
    out = tmp_path / "out"
    with pytest.raises(OfficialLayoutError, match=rf"{re.escape(key)} holds NaN or infinite"):
        convert(tmp_path / "nan", out, configs())
    assert not out.exists()
    # the size bound is checked from the file's size, before anything is read
    path = folder / "I_Elatest_gen_ema.pth"
    monkeypatch.setattr("ucdir.official.MAX_FILE_BYTES", path.stat().st_size - 1)
    monkeypatch.setattr("ucdir.official.torch.load", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(OfficialLayoutError, match=r"bytes, more than the .* a UCDIR release"):
        convert(folder, out, configs())
    assert not out.exists()


class _Run:
    """A pickled object whose unpickling would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "I_Elatest_gen_ema.pth"
    torch.save({"denoise_fn.downs.0.weight": _Run(marker)}, path, pickle_protocol=2)
    assert zipfile.is_zipfile(path)
    with pytest.raises(OfficialLayoutError, match="cannot be read as plain tensors"):
        read_release(path)
    assert not marker.exists()
    done = run_module("ucdir.convert", f"official={tmp_path}", f"output={tmp_path / 'out'}",
                      env={"UCDIR_LOG_DIR": str(tmp_path / "logs")})  # fmt: skip
    assert done.returncode == 1 and "nothing from it was executed" in done.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_converted_full_size_model_restores_a_photo_in_tiles_without_seams(
    converted: Path, shared_data: Path
) -> None:
    """Inter-step patch splitting with the paper's full-size networks: no seam at the tile
    boundaries (the boundary test of tests/diffusion/test_patching.py), unlike naive tiling."""
    model = UCDIR.load(converted)
    photo = (
        Image.open(shared_data / "natural" / "chelsea.png").convert("RGB").crop((0, 0, 320, 160))
    )
    lq = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1)[None] / 255.0
    sampler = load_sampler("ddpm", steps=2)
    boundaries = [s.core_stop for s in spans(288, 128, 32)[:-1]]
    ratios = {}
    for name, patch in (("inter_step", PatchSplit(128, 32)), ("naive", NaivePatchSplit(128, 32))):
        with torch.no_grad():
            out = restore(lq, model.predictor, model.denoiser, sampler, patch,
                          torch.Generator().manual_seed(0))  # fmt: skip
        assert out.restored.shape == lq.shape and bool(out.restored.isfinite().all())
        ratios[name] = boundary_excess(out.restored - out.x_init, boundaries)
    assert ratios["inter_step"] < 1.15, ratios
    assert ratios["naive"] > ratios["inter_step"], ratios
