"""What the web app does, without the web page: load a model (cached), restore one uploaded file
as `python -m ucdir.restore` would, and say which command reproduces it.

Every restoration is a composed `restore` config (configs/restore.yaml) with the page's choices as
overrides, run through the restore CLI's own pieces (model loading, sampler choice, PNG and JSON
writers), so the command shown next to a result writes the same PNG. The model is one the
operator offers (`ModelAllowList`), checked on every request before anything is read.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from torch import Tensor

from ucdir.app.progress import (
    CancelRequestedError,
    CountingDenoiser,
    Progress,
    Report,
    tiles_per_step,
)
from ucdir.config_files import CONFIG_DIR, config_dir
from ucdir.data.images import image_size, read_image
from ucdir.device import resolve_device
from ucdir.hub import CONFIG_FILE, UCDIR, WEIGHTS_FILE, shipped_models
from ucdir.loader import load_model
from ucdir.precision import Precision, prepare_networks, resolve_precision
from ucdir.restore.inputs import input_kind, list_inputs
from ucdir.restore.session import RestoreSession

log = logging.getLogger(__name__)

PatchChoice = Literal["tiles", "auto", "none"]
PATCHES: tuple[str, ...] = ("tiles", "auto", "none")


class InputError(ValueError):
    """An upload or a choice the app cannot restore; the message is shown in the page."""


def upload_folders() -> tuple[Path, ...]:
    """Where gradio keeps uploads: `GRADIO_TEMP_DIR` when set, and its default `<tmp>/gradio`."""
    default = Path(tempfile.gettempdir()) / "gradio"
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    return (Path(chosen), default) if chosen else (default,)


def _inside(path: Path, folders: Iterable[Path]) -> Path | None:
    """The first of `folders` that holds `path` (both with symbolic links resolved), if any."""
    target = path.expanduser().resolve()
    for folder in folders:
        root = folder.expanduser().resolve()
        if target.is_relative_to(root):
            return folder
    return None


def exported_models(models_dir: Path) -> dict[str, str]:
    """The exported models directly under `models_dir` (folders holding `config.json` and
    `model.safetensors`): folder name -> absolute path."""
    return {
        p.name: str(p)
        for p in sorted(models_dir.absolute().iterdir())
        if (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()
    }


@dataclass(frozen=True)
class ModelAllowList:
    """The models a visitor may choose: the operator's, never a path or hub id a visitor typed.

    Every request is checked against it before anything is read from disk: the page's model box
    lists `names`, but a visitor can also send any value to the server's API.

    Args:
        offered: each name the page lists -> the `pretrained=` it loads: the operator's
            `pretrained=` as given, each shipped model by name, each model of `models_dir` by
            its folder.
        allow_any: also load any other folder or hub id a visitor names (`allow_any_model=true`).
        forbidden: folders no model is loaded from even then: gradio's uploads, the results.
    """

    offered: Mapping[str, str]
    allow_any: bool = False
    forbidden: tuple[Path, ...] = ()

    @classmethod
    def of(
        cls,
        pretrained: str,
        models_dir: str | Path | None = None,
        *,
        allow_any: bool = False,
        results: Path | None = None,
    ) -> ModelAllowList:
        """The operator's `pretrained=`, the shipped models and the exported models directly under
        `models_dir` (read once, here); gradio's uploads and `results` forbidden.

        Raises:
            ValueError: `models_dir` is no folder, or lies inside the uploads or the results.
        """
        forbidden = (*upload_folders(), *([results] if results is not None else []))
        offered = {pretrained: pretrained}
        offered.update((name, name) for name in shipped_models() if name not in offered)
        if models_dir is not None:
            folder = Path(models_dir).expanduser()
            if not folder.is_dir():
                raise ValueError(f"models_dir={models_dir}: no such folder")
            if (holder := _inside(folder, forbidden)) is not None:
                raise ValueError(
                    f"models_dir={models_dir} lies inside {holder}: uploads and results are "
                    "never models"
                )
            for name, path in exported_models(folder).items():
                if name in offered:
                    log.warning("models_dir: %s is not offered, %r names another model", path, name)
                else:
                    offered[name] = path
        return cls(offered, allow_any, forbidden)

    @property
    def names(self) -> list[str]:
        """The models the page lists, the operator's `pretrained=` first."""
        return list(self.offered)

    def source(self, name: str) -> str:
        """The `pretrained=` to load for a visitor's choice `name`; no file is read to decide.

        Raises:
            InputError: `name` is not offered (and `allow_any` is off), or it lies inside one of
                the `forbidden` folders.
        """
        if name in self.offered:
            return self.offered[name]
        shown = repr(name[:200])
        if not self.allow_any:
            raise InputError(
                f"model {shown} is not offered by this server; choose one of: "
                f"{', '.join(self.offered)}"
            )
        if _inside(Path(name), self.forbidden) is not None:
            raise InputError(f"model {shown} is refused: uploads and results are never models")
        return name


def samplers() -> list[str]:
    """Every `sampler=` option of the restore command (the files of configs/sampler)."""
    return sorted(p.stem for p in (config_dir() / "sampler").glob("*.yaml"))


@dataclass(frozen=True)
class Choices:
    """The page's settings for one restoration; each is a `python -m ucdir.restore` key.

    Args:
        pretrained: a shipped model's name, an exported folder or a hub id.
        sampler: a `sampler=` option (`samplers()`); `model` (the default) is the model's own.
        steps: sampler steps; 0 keeps the sampler's own count (a regression model always makes
            one forward).
        seed: seed of the only random generator.
        guidance: fidelity–realness scale ≥ 0 (0 = the paper's sampler, more = closer to x_init).
        num_samples: samples per image; > 1 also gives their mean and per-pixel spread.
        patch: inter-step patch splitting: `tiles` (square tiles of `tile` px), `auto` (largest
            tile within the memory budget of configs/patch/auto.yaml) or `none` (whole image).
        tile: tile size in px for `patch=tiles`.
    """

    pretrained: str
    sampler: str = "model"
    steps: int = 0
    seed: int = 0
    guidance: float = 0.0
    num_samples: int = 1
    patch: PatchChoice = "tiles"
    tile: int = 256

    def __post_init__(self) -> None:
        if self.sampler not in samplers():
            raise InputError(f"sampler must be one of {samplers()}, got {self.sampler!r}")
        if self.patch not in PATCHES:
            raise InputError(f"patch must be one of {list(PATCHES)}, got {self.patch!r}")
        if self.steps < 0 or self.num_samples < 1 or self.guidance < 0:
            raise InputError(
                "need steps >= 0, num_samples >= 1 and guidance >= 0, got "
                f"steps={self.steps!r}, num_samples={self.num_samples!r}, "
                f"guidance={self.guidance!r}"
            )

    def overrides(self) -> list[str]:
        """The Hydra overrides of these choices (paths excluded: they are set on the config)."""
        out = [f"sampler={self.sampler}"] if self.sampler != "model" else []
        if self.steps:
            out.append(f"sampler.steps={self.steps}")
        out += [
            f"seed={self.seed}",
            f"guidance={self.guidance}",
            f"num_samples={self.num_samples}",
            f"patch={self.patch}",
        ]
        if self.patch == "tiles":
            out.append(f"patch.tile={self.tile}")
        return out

    def command(
        self,
        input_name: str,
        output: str = "restored/",
        device: str = "auto",
        precision: str = "auto",
    ) -> str:
        """The `python -m ucdir.restore …` command line that writes the same result."""
        args = [
            _override("pretrained", self.pretrained),
            _override("input", input_name),
            _override("output", output),
            *self.overrides(),
        ]
        if device != "auto":
            args.append(f"device={device}")
        if precision != "auto":
            args.append(f"precision={precision}")
        return "python -m ucdir.restore " + " ".join(shlex.quote(a) for a in args)


def _override(key: str, value: str) -> str:
    """`key=value` as Hydra parses it back: a value with spaces or grammar characters is
    double-quoted (the shell quoting is added around the whole override)."""
    if value and all(c.isalnum() or c in "._-/~+@" for c in value):
        return f"{key}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


_COMPOSE_LOCK = threading.Lock()


def restore_config(overrides: list[str]) -> DictConfig:
    """The config `python -m ucdir.restore <overrides>` would run with (configs/restore.yaml)."""
    with _COMPOSE_LOCK:
        if GlobalHydra.instance().is_initialized():  # inside `python -m ucdir.app`
            return compose(config_name="restore", overrides=overrides)
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            return compose(config_name="restore", overrides=overrides)


@functools.lru_cache(maxsize=4)
def cached_model(pretrained: str, device: str, precision: Precision = "fp32") -> UCDIR:
    """The model of `pretrained=`, loaded once per (name, device, precision) for the app's
    lifetime, on `device` with its weights in the layout of `precision`
    (`ucdir.precision.prepare_networks`).

    `pretrained` must come from `ModelAllowList.source`: this loads whatever it names.

    Raises:
        InputError: the name is no folder, shipped model or reachable hub id, or the model
            takes packed raw input (the app restores RGB images).
    """
    try:
        model = load_model(pretrained=pretrained)
    except FileNotFoundError as err:
        raise InputError(str(err)) from err
    if input_kind(int(getattr(model.denoiser, "lq_channels", 3))) != "image":
        raise InputError(
            f"model {pretrained!r} restores camera raw files (packed raw Bayer input, trained with "
            "task=sid task.input=packed), not the RGB images this app reads: choose an RGB model "
            "such as jpeg-cpu, or restore raw files with python -m ucdir.restore"
        )
    model.to(torch.device(device)).eval()
    prepare_networks(precision, torch.device(device), model.predictor, model.denoiser)
    model.sha256  # hashed once, here, not per request  # noqa: B018
    return model


def check_upload(path: str | Path, max_pixels: int) -> tuple[int, int]:
    """(height, width) of an uploaded image from its header, before any pixel is decoded.

    Raises:
        InputError: a camera raw file, not an image, or more than `max_pixels` pixels (a
            decompression bomb, or simply too large for this server).
    """
    try:
        list_inputs(Path(path), "image")  # a camera raw file is named as such
        return image_size(path, "input", max_pixels)
    except (ValueError, FileNotFoundError) as err:
        raise _input_error(err, Path(path), Path(path).name) from err


def _input_error(err: Exception, path: Path, name: str) -> InputError:
    """`err` about the upload `path`, naming it `name` (not the server's temporary path)."""
    message = str(err).replace(str(path), name)
    return InputError(message if name in message else f"{name}: {message}")


class Result(NamedTuple):
    """One restored upload: images (H, W, 3) float32 in [0, 1] and what was written.

    Attributes:
        lq: the input as decoded.
        restored: the first sample.
        x_init: the initial prediction u(lq).
        mean: mean of the samples (None for one sample).
        std: per-pixel standard deviation of the samples (None for one sample).
        sidecar: the JSON sidecar (as the restore command writes it).
        command: the `python -m ucdir.restore` line that reproduces `restored`.
        files: the written PNG, its JSON sidecar, and for K > 1 the mean and spread PNGs.
    """

    lq: np.ndarray
    restored: np.ndarray
    x_init: np.ndarray
    mean: np.ndarray | None
    std: np.ndarray | None
    sidecar: dict[str, Any]
    command: str
    files: list[Path]


def _image(x: Tensor) -> np.ndarray:
    return x[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def restore_upload(
    path: str | Path,
    choices: Choices,
    out_dir: str | Path,
    *,
    models: ModelAllowList,
    max_pixels: int,
    device: str = "auto",
    precision: str = "auto",
    name: str | None = None,
    report: Report | None = None,
    cancel: threading.Event | None = None,
) -> Result:
    """Restores one image file as `choices.command(name)` would; writes into `out_dir`.

    Args:
        path: the uploaded file.
        choices: model, sampler and the other settings.
        out_dir: folder for `<stem>.png`, `<stem>.json` (and `_mean`, `_std` for K > 1).
        models: the models this server offers; any other `choices.pretrained` is refused
            before anything is read.
        max_pixels: larger uploads are refused from their header, before decoding.
        device: `auto`, `cpu`, `cuda`, ... (as the restore command's `device=`).
        precision: `auto`, `fp32`, `bf16` (as the restore command's `precision=`).
        name: the file's name as the user knows it (default: the upload's name).
        report: progress callback over sampler steps and tiles.
        cancel: stops the restoration at the next tile when set.

    Raises:
        InputError: a model `models` does not allow, an unreadable or too large upload, an
            unknown model, a model that does not take RGB input, or settings the model cannot
            run with.
        CancelRequestedError: `cancel` was set.
    """
    choices = replace(choices, pretrained=models.source(choices.pretrained))
    src = Path(path)
    name = name or src.name
    try:
        check_upload(src, max_pixels)
    except InputError as err:
        raise _input_error(err, src, name) from err
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model = cached_model(choices.pretrained, str(dev), prec)
    try:
        lq = torch.from_numpy(read_image(src, "input", max_pixels)).permute(2, 0, 1)[None].to(dev)
    except (ValueError, FileNotFoundError) as err:
        raise _input_error(err, src, name) from err
    out = Path(out_dir) / f"{Path(name).stem}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = restore_config([*choices.overrides(), f"device={device}", f"precision={precision}"])
    cfg.pretrained, cfg.input, cfg.output = choices.pretrained, str(src), str(out.parent)
    cfg.paths.output_dir = str(out.parent)  # the run folder, outside `python -m` too
    try:
        session = RestoreSession.open(cfg, model)
        scalars = session.scalars(cfg.scalars or {})
    except (ValueError, InstantiationException) as err:
        raise InputError(f"{choices.pretrained}: {err}") from err
    scale = int(getattr(model.predictor, "upscale", 1))
    progress = Progress(
        report,
        session.sampler.steps * choices.num_samples,
        tiles_per_step(session.patch, lq.shape[-2] * scale, lq.shape[-1] * scale),
        name,
        cancel,
    )
    try:
        result = session(
            lq,
            scalars=scalars,
            callback=progress.on_step,
            denoiser=CountingDenoiser(model.denoiser, progress.on_call),
        )
    except RuntimeError as err:
        if isinstance(err, CancelRequestedError):
            raise
        raise InputError(f"{name}: model {choices.pretrained!r} cannot restore it: {err}") from err
    sidecar = session.save(result, src, out, cfg, bits=int(cfg.bits), scalars=scalars)
    files = [out, out.with_suffix(".json")]
    if result.mean is not None:
        files += [out.with_name(f"{out.stem}_mean.png"), out.with_name(f"{out.stem}_std.png")]
    return Result(
        lq=_image(lq),
        restored=_image(result.restored),
        x_init=_image(result.x_init),
        mean=None if result.mean is None else _image(result.mean),
        std=None if result.std is None else _image(result.std),
        sidecar=sidecar,
        command=choices.command(name, device=device, precision=precision),
        files=files,
    )
