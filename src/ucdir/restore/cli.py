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

from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from ucdir.loader import check_model_source
from ucdir.restore.inputs import InputKind, check_source, input_kind, list_inputs, load_input
from ucdir.restore.outputs import check_bits, check_output_dir, make_output_dir, plan_outputs
from ucdir.restore.session import RestoreSession

__all__ = ["run"]

log = logging.getLogger(__name__)


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
    source, out_dir = Path(str(cfg.input)), Path(str(cfg.output))
    check_source(source)
    check_model_source(cfg.ckpt_path, cfg.pretrained)
    check_output_dir(out_dir)
    session = RestoreSession.open(cfg)
    kind = input_kind(int(getattr(session.denoiser, "lq_channels", 3)))
    ratio = _exposure_ratio(cfg, kind, session.task)
    scalars = session.scalars(cfg.scalars or {}, ratio)
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
        steps = tqdm(total=session.sampler.steps * num_samples, desc=src.name, leave=False)
        result = session(loaded.lq.to(session.device), scalars=scalars, callback=_progress(steps))
        steps.close()
        session.save(
            result,
            src,
            out,
            cfg,
            bits=bits,
            scalars=scalars,
            input_kind=kind,
            exposure_ratio=ratio,
            repaired_nonfinite=loaded.repaired,
        )
    if failed:
        raise ValueError(
            f"input: {len(failed)} file(s) could not be read (the others were restored): {failed}"
        )
    return plan.outputs
