"""`python -m ucdir.restore ckpt_path=…|pretrained=… input=<image or folder> output=<folder>`.

Restores images (or, with a packed-raw model, camera raw files) of any size with a trained
checkpoint (EMA weights), writing PNGs and one JSON sidecar per output; never writes over an input.
Everything that can be checked is checked before the first image is computed (the model, the
output folder, existing outputs); a file that cannot be read is reported at the end, after the
others are restored. `skip_existing=true` continues an interrupted run (`ucdir.restore.outputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm

from ucdir.checkpoints import (
    check_checkpoint_file,
    check_finite,
    file_hash,
    load_state,
    read_checkpoint,
    run_config,
)
from ucdir.device import resolve_device
from ucdir.from_file import build_networks
from ucdir.precision import prepare_networks, resolve_precision
from ucdir.restore.core import restore
from ucdir.restore.inputs import InputKind, check_source, input_kind, list_inputs, load_input
from ucdir.restore.outputs import (
    Provenance,
    check_bits,
    check_output_dir,
    make_output_dir,
    plan_outputs,
    save_restoration,
    write_png,
)

__all__ = ["choose_sampler", "load_model", "load_networks", "run", "write_png"]

log = logging.getLogger(__name__)


def load_model(
    ckpt_path: str | Path | None, pretrained: str | None, device: torch.device
) -> tuple[nn.Module, nn.Module, dict, Path]:
    """The networks of `pretrained=` (an exported folder, a shipped model or a hub id) or of
    `ckpt_path=` (a training checkpoint), exactly one of them; also their config (`model`, and
    `task` when known) and the weights file (hashed into the sidecars)."""
    check_model_source(ckpt_path, pretrained)
    if pretrained is not None:
        from ucdir.hub import UCDIR

        model = UCDIR.load(pretrained)
        config = {
            "model": {
                "predictor": model.predictor_config,
                "denoiser": model.denoiser_config,
                "sampler": model.sampler_config,
            },
            "task": model.task,
        }
        weights = Path(str(model.weights_file))  # set by `load`
        return (
            model.predictor.to(device).eval(),
            model.denoiser.to(device).eval(),
            config,
            weights,
        )
    predictor, denoiser, cfg = load_networks(ckpt_path, device)  # type: ignore[arg-type]
    return predictor, denoiser, cfg, Path(str(ckpt_path))


def check_model_source(ckpt_path: str | Path | None, pretrained: str | None) -> None:
    """Cheap checks of `ckpt_path=` / `pretrained=` (exactly one; the file or folder exists)
    without reading the weights, so that nothing is created for a run that cannot start."""
    if (ckpt_path is None) == (pretrained is None):
        raise ValueError(
            "give exactly one of pretrained=<exported folder | shipped model | hub id> and "
            "ckpt_path=<training checkpoint>"
        )
    if ckpt_path is not None:
        check_checkpoint_file(ckpt_path)
    else:
        from ucdir.hub import resolve_pretrained

        resolve_pretrained(str(pretrained))


def choose_sampler(sampler_cfg: Any, run_cfg: dict) -> Any:
    """The sampler of `sampler_cfg`, except for a regression model (exported or trained with the
    regression sampler), whose output is the residual itself: it always gets one forward."""
    from ucdir.diffusion.sampling import RegressionSampler

    sampler = instantiate(sampler_cfg)
    own = ((run_cfg.get("model") or {}).get("sampler") or {}).get("_target_", "")
    if str(own).endswith("RegressionSampler") and not isinstance(sampler, RegressionSampler):
        log.info("a regression model: restored with one forward (sampler=regression)")
        return RegressionSampler()
    if str(own).endswith("DistilledSampler") and type(sampler).__name__ != "DistilledSampler":
        log.warning(
            "a distilled student: it was trained for its own few-step sampler; restore it with "
            "sampler=distilled sampler.steps=1 (or 2, 4) rather than %s",
            getattr(sampler, "name", type(sampler).__name__),
        )
    return sampler


def load_networks(ckpt_path: str | Path, device: torch.device) -> tuple[nn.Module, nn.Module, dict]:
    """The predictor and denoiser of a ucdir checkpoint (its EMA weights when EMA had started),
    rebuilt from the run configuration stored inside it."""
    ckpt = read_checkpoint(ckpt_path)
    cfg = run_config(ckpt)
    model: dict = cfg["model"] if isinstance(cfg.get("model"), dict) else {}
    # a config from a file builds only allow-listed networks, bounded before allocation
    nets = build_networks(model.get("predictor"), model.get("denoiser"), "ckpt_path: model.")
    predictor, denoiser = nets.predictor, nets.denoiser
    load_state(predictor, ckpt, prefix="predictor.")
    load_state(denoiser, ckpt, prefix="denoiser.")
    check_finite(predictor, ckpt_path, "predictor.")
    check_finite(denoiser, ckpt_path, "denoiser.")
    return predictor.to(device).eval(), denoiser.to(device).eval(), cfg


def _exposure_ratio(cfg: DictConfig, kind: InputKind, task: dict) -> float | None:
    """`exposure_ratio=` for raw input (required there, refused for images); warns above the
    model's training cap `task.max_ratio`."""
    ratio = cfg.get("exposure_ratio")
    if kind == "image":
        if ratio is not None:
            raise ValueError(
                "exposure_ratio: only for camera raw input (models trained with task=sid "
                "task.input=packed); an RGB model with an exposure scalar takes "
                "+scalars.exposure_ratio=<ratio / max_ratio>"
            )
        return None
    if ratio is None:
        raise ValueError(
            "exposure_ratio: this model restores camera raw files, amplified like in training: "
            "pass exposure_ratio=<amplification of the exposure, e.g. 100 (SID: long / short)>"
        )
    if float(ratio) <= 0:
        raise ValueError(f"exposure_ratio must be positive, got {ratio!r}")
    cap = float(task.get("max_ratio", 300))
    if float(ratio) > cap:
        log.warning("exposure_ratio=%s is above the model's training range (up to %g)", ratio, cap)
    return float(ratio)


def _scalars(
    cfg: DictConfig,
    names: tuple[str, ...],
    device: torch.device,
    ratio: float | None,
    task: dict,
) -> Tensor | None:
    """The model's auxiliary scalars (1, K): `scalars.<name>=`, and for raw input the
    ``exposure_ratio`` scalar from `exposure_ratio=` (ratio / `task.max_ratio`, as in training)."""
    if not names:
        return None
    given = dict(cfg.scalars or {})
    if ratio is not None and "exposure_ratio" in names and "exposure_ratio" not in given:
        given["exposure_ratio"] = ratio / float(task.get("max_ratio", 300))
    missing = [n for n in names if n not in given]
    if missing:
        raise ValueError(
            f"scalars: this model needs auxiliary scalars {list(names)}; pass e.g. "
            + " ".join(f"+scalars.{n}=<value normalised like in training>" for n in missing)
        )
    return torch.tensor([[float(given[n]) for n in names]], device=device)


def _progress(bar: tqdm) -> Callable[[int, Tensor], None]:
    def update(step: int, x: Tensor) -> None:
        bar.update(1)

    return update


def run(cfg: DictConfig) -> list[Path]:
    """Restores every input; returns the output path of every input (restored now or, with
    `skip_existing=true`, before).

    Raises:
        ValueError: at the end, naming the files that could not be read (the others restored).
    """
    bits, max_pixels = check_bits(int(cfg.bits)), int(cfg.max_pixels)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {cfg.max_pixels!r}")
    num_samples = int(cfg.num_samples)
    repair_nonfinite = bool(cfg.get("repair_nonfinite", False))
    device = resolve_device(str(cfg.device))
    precision = resolve_precision(str(cfg.get("precision", "auto")), device)
    source, out_dir = Path(str(cfg.input)), Path(str(cfg.output))
    check_source(source)
    check_model_source(cfg.ckpt_path, cfg.pretrained)
    check_output_dir(out_dir)
    predictor, denoiser, run_cfg, weights = load_model(cfg.ckpt_path, cfg.pretrained, device)
    prepare_networks(precision, device, predictor, denoiser)
    log.info(
        "restoring on %s in %s (precision=%s)", device, precision, cfg.get("precision", "auto")
    )
    task = dict(run_cfg.get("task") or {})
    kind = input_kind(int(getattr(denoiser, "lq_channels", 3)))
    ratio = _exposure_ratio(cfg, kind, task)
    scalars = _scalars(cfg, tuple(getattr(denoiser, "aux_scalars", ())), device, ratio, task)
    plan = plan_outputs(
        list_inputs(source, kind, out_dir),
        out_dir,
        num_samples,
        bool(cfg.overwrite),
        bool(cfg.get("skip_existing", False)),
    )
    if plan.done:
        log.info("%d output(s) done already (skip_existing=true): skipped", len(plan.done))
    make_output_dir(out_dir)
    sampler = choose_sampler(cfg.sampler, run_cfg)
    patch = instantiate(cfg.patch) if cfg.get("patch") is not None else None
    ckpt_hash = file_hash(weights)
    failed: list[str] = []
    for src, out in tqdm(plan.todo, desc="images", unit="img"):
        try:
            loaded = load_input(src, kind, max_pixels, ratio, repair_nonfinite)
        except (ValueError, FileNotFoundError) as err:
            log.error("%s", err)
            failed.append(str(src))
            continue
        if loaded.repaired:
            log.warning(
                "%s: %d non-finite value(s) replaced (repair_nonfinite=true)", src, loaded.repaired
            )
        lq = loaded.lq.to(device)
        steps = tqdm(total=sampler.steps * num_samples, desc=src.name, leave=False)
        result = restore(
            lq,
            predictor,
            denoiser,
            sampler,
            patch,
            torch.Generator(device=device).manual_seed(int(cfg.seed)),
            scalars=scalars,
            guidance=float(cfg.guidance),
            num_samples=num_samples,
            callback=_progress(steps),
            precision=precision,
        )
        steps.close()
        made_by = Provenance(
            cfg,
            run_cfg,
            weights,
            ckpt_hash,
            sampler,
            patch,
            scalars,
            device,
            kind,
            ratio,
            loaded.repaired,
            precision,
        )
        save_restoration(result, src, out, bits, made_by)
    if failed:
        raise ValueError(
            f"input: {len(failed)} file(s) could not be read (the others were restored): {failed}"
        )
    return plan.outputs
