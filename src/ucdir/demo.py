"""`python -m ucdir.demo` (`make demo`): the first run to see, on the CPU, in a few minutes.

Restores the embedded held-out photo (JPEG quality 10, real libjpeg) with the model shipped in
the package (`jpeg-cpu`: the paper's 50-step DDPM and 10-step DPM-Solver++) and with its
regression twin (`jpeg-cpu-regression`), prints the table (JPEG input / regression / x_init /
UCDIR; PSNR, SSIM, NIQE, seconds, scored as `python -m ucdir.evaluate` scores) and writes
`demo_panel.png` (JPEG | regression | x_init | UCDIR | ground truth). Then it exercises the
training system: a short fine-tuning of the shipped model on the embedded sample photos
(`pretrained=jpeg-cpu`, Lightning, EMA, checkpoints, a validation) and restores again with the
fine-tuned checkpoint. Everything lands in the run directory with `demo_metrics.json`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import Tensor

from ucdir.config_files import CONFIG_DIR
from ucdir.loader import load_model
from ucdir.metrics import PAPER_METRICS, Metrics, per_image
from ucdir.overrides import reports_user_errors, run_command
from ucdir.png import write_png
from ucdir.precision import prepare_networks, resolve_precision
from ucdir.restore.core import Restoration
from ucdir.restore.session import RestoreSession
from ucdir.train import train
from ucdir.types import PairBatch

log = logging.getLogger(__name__)

METRICS = per_image(PAPER_METRICS)  # the paper's metrics that score one image


def _score(image: Tensor, gt: Tensor) -> dict[str, float]:
    """LPIPS-Alex, PSNR / SSIM (8-bit, per image) and NIQE: the scorer of `ucdir.evaluate`
    (LPIPS is left out, with one warning, when `python -m ucdir.weights install` has not run)."""
    scorer = Metrics(METRICS, on_missing="skip")
    scorer.update(image, gt)
    values = scorer.compute().aggregate
    return {m: round(float(values[m]), 4) for m in METRICS if m in values}


def _sampler(name: str, steps: int) -> Any:
    """A sampler option of the config group, on the paper's evaluation schedule."""
    cfg = hydra.compose(
        config_name="train",
        overrides=[f"sampler={name}", f"sampler.steps={steps}", "schedule=linear_eval"],
    )
    return instantiate(cfg.sampler)


def _timed(run: Callable[[], Restoration]) -> tuple[Restoration, float]:
    start = time.perf_counter()
    out = run()
    return out, round(time.perf_counter() - start, 2)


def _row(method: str, image: Tensor, gt: Tensor, seconds: float | None) -> dict[str, Any]:
    return {"method": method, **_score(image, gt), "seconds": seconds}


def _name(session: RestoreSession) -> str:
    return f"{session.sampler.name} {session.sampler.steps} steps"  # type: ignore[attr-defined]


def demo(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Restores the held-out sample with the shipped models, fine-tunes, restores again; writes
    the panel and the metrics into `out_dir` and returns them."""
    start = time.perf_counter()
    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    batch = PairBatch(*next(iter(datamodule.val_dataloader())))
    lq, gt, scalars = batch.lq, batch.gt, batch.scalars
    seed = int(cfg.seed)
    model, twin = load_model(pretrained=cfg.demo.model), load_model(pretrained=cfg.demo.regression)
    precision = resolve_precision(str(cfg.get("precision", "auto")), lq.device)
    nets = (model.predictor, model.denoiser, twin.predictor, twin.denoiser)
    prepare_networks(precision, lq.device, *nets)

    rows = [_row("JPEG input (quality 10)", lq, gt, None)]
    session = RestoreSession.of(twin, precision=precision, seed=seed)
    regression, seconds = _timed(lambda: session(lq, scalars=scalars))
    rows.append(_row(f"regression ({cfg.demo.regression})", regression.restored, gt, seconds))
    restorations: list[Restoration] = []
    for spec in cfg.demo.samplers:
        session = RestoreSession.of(
            model, _sampler(spec.name, int(spec.steps)), precision=precision, seed=seed
        )
        out, seconds = _timed(functools.partial(session, lq, scalars=scalars))
        if not restorations:
            rows.append(_row(f"x_init ({cfg.demo.model})", out.x_init, gt, None))
        label = f"UCDIR ({cfg.demo.model}), {_name(session)}"
        rows.append(_row(label, out.restored, gt, seconds))
        restorations.append(out)
    if cfg.demo.get("student"):  # the one-call restorer, with its own sampler
        student = load_model(pretrained=cfg.demo.student)
        prepare_networks(precision, lq.device, student.predictor, student.denoiser)
        session = RestoreSession.of(student, precision=precision, seed=seed)
        out, seconds = _timed(functools.partial(session, lq, scalars=scalars))
        calls = int(session.sampler.steps)  # type: ignore[attr-defined]
        label = f"UCDIR ({cfg.demo.student}), {calls} network call{'s' if calls > 1 else ''}"
        rows.append(_row(label, out.restored, gt, seconds))
    first = restorations[0]
    write_png(
        torch.cat([lq[0], regression.restored[0], first.x_init[0], first.restored[0], gt[0]], -1),
        out_dir / "demo_panel.png",
    )

    finetune: dict[str, Any] = {"steps": int(cfg.trainer.max_steps), "seconds": None}
    if finetune["steps"] > 0:
        tic = time.perf_counter()
        with open_dict(cfg):
            cfg.pretrained = cfg.demo.model
        train(cfg)
        finetune["seconds"] = round(time.perf_counter() - tic, 1)
        tuned = load_model(ckpt_path=out_dir / "checkpoints" / "last.ckpt").to(lq.device)
        prepare_networks(precision, lq.device, tuned.predictor, tuned.denoiser)
        spec = cfg.demo.samplers[-1]
        session = RestoreSession.of(
            tuned, _sampler(spec.name, int(spec.steps)), precision=precision, seed=seed
        )
        out, seconds = _timed(functools.partial(session, lq, scalars=scalars))
        label = f"UCDIR fine-tuned {finetune['steps']} steps, {_name(session)}"
        rows.append(_row(label, out.restored, gt, seconds))

    result = {
        "image": "chelsea (held out, never trained on), JPEG quality 10",
        "size": list(gt.shape[-2:]),
        "precision": precision,
        "rows": rows,
        "finetune": finetune,
        "total_seconds": round(time.perf_counter() - start, 1),
        "panel": str(out_dir / "demo_panel.png"),
    }
    (out_dir / "demo_metrics.json").write_text(json.dumps(result, indent=2))
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    """The demo's rows as a Markdown table."""
    lines = [
        "| Method | LPIPS ↓ | PSNR ↑ | SSIM ↑ | NIQE ↓ | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        seconds = "–" if r["seconds"] is None else f"{r['seconds']:.1f}"
        niqe = f"{r['niqe']:.3f}" if "niqe" in r else "–"
        lpips = f"{r['lpips']:.4f}" if "lpips" in r else "–"
        lines.append(
            f"| {r['method']} | {lpips} | {r['psnr']:.2f} | {r['ssim']:.4f} | {niqe} | {seconds} |"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="demo")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    result = demo(cfg, Path(HydraConfig.get().runtime.output_dir))
    h, w = result["size"]
    lines = [
        f"demo: held-out photo {result['image']}, {w}x{h}",
        format_table(result["rows"]),
        f"panel (JPEG | regression | x_init | UCDIR | ground truth): {result['panel']}",
    ]
    if result["finetune"]["seconds"] is not None:
        lines.append(
            f"fine-tuning: {result['finetune']['steps']} steps in "
            f"{result['finetune']['seconds']} s (checkpoints in the run directory)"
        )
    lines.append(f"total: {result['total_seconds']} s")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    run_command(main)
