"""`python -m ucdir.evaluate`: scores restorations under the paper's protocol (`ucdir.metrics`).

Modes (`mode=auto`, the default, picks `model` when `ckpt_path` or `pretrained` is given, else
`score`):

- `mode=score` (`restored=<folder> gt=<folder>`): scores any method's outputs against ground
  truth, pairing files by name without extension (`0001.png` ↔ `0001.jpg`; `recursive=true`:
  by relative path), every image read by `ucdir.data.images` (the extensions training reads;
  hidden files, such as an interrupted restore's temporary files, ignored). Unmatched files,
  size mismatches and unreadable images (a file over `max_pixels` included) are all listed in
  one error before anything is scored. One row, named `name=` (default: the restored folder).
- `mode=model` (`ckpt_path=…` or `pretrained=…`, `task=…`): restores the task's test split and
  scores the rows: the restoration (with the seconds per image of `restore()`), its x_init
  (`score_x_init`), the mean of K samples (`num_samples` > 1), the degraded input itself
  (`score_input`); the images go to `<run dir>/restored/`, `x_init/`, ... (`save_images`).

Prints the results table as Markdown on stdout and writes, into the run directory
(`${hydra:runtime.output_dir}`, by default `outputs/evaluate/<date>_<time>`):

- `results.md`, `results.csv`, `results.json`: the rows, columns LPIPS, NIQE, FID, KID (×10³),
  PSNR, SSIM as in the paper's tables;
- `per_image.csv`: the per-image values;
- `protocol.json`: how each metric was computed, versions, and the metrics that were skipped.

A metric whose weights file (or package) is missing is skipped with a warning naming the file and
where to put it (`on_missing=skip`, the default here); the others are still computed and written,
and the note is repeated under the table in `results.md`. `protocol.on_missing=raise` stops before
scoring anything instead.

A multirun (`-m ckpt_path=… sampler=ddpm,dpmpp sampler.steps=10,50`) also writes one combined
table of every job (`sweep_results.md`, `.csv`) into the sweep directory (`ucdir.sweep`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from ucdir.config_files import CONFIG_DIR
from ucdir.data.images import MAX_PIXELS, image_size, images_by_name
from ucdir.data.images import read_image as read_rgb
from ucdir.device import resolve_device
from ucdir.metrics import (
    CorruptWeightsError,
    Metrics,
    MetricUnavailableError,
    results_markdown,
    results_row,
    write_results,
)
from ucdir.overrides import reports_user_errors, run_command
from ucdir.png import write_png
from ucdir.restore.session import RestoreSession

log = logging.getLogger(__name__)

MODES = ("auto", "score", "model")


class FolderScores(NamedTuple):
    """What `score_folders` returns.

    Attributes:
        rows: the results-table rows (one: the scored method).
        per_image: one row per image pair.
        protocol: the metrics' protocol plus the folders and the pairing rule.
    """

    rows: list[dict[str, Any]]
    per_image: list[dict[str, Any]]
    protocol: dict[str, Any]


def pair_images(
    restored_dir: str | Path,
    gt_dir: str | Path,
    recursive: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> list[tuple[str, Path, Path]]:
    """(name, restored path, gt path) for every image name present in both folders.

    Raises:
        ValueError: listing every unmatched file on either side, every file whose header cannot
            be read or claims more than `max_pixels` pixels, and every pair whose sizes differ.
    """
    restored = images_by_name(restored_dir, "restored", recursive)
    gt = images_by_name(gt_dir, "gt", recursive)
    problems = []
    if only_restored := sorted(restored.keys() - gt.keys()):
        problems.append(f"no ground truth in {gt_dir} for: {', '.join(only_restored)}")
    if only_gt := sorted(gt.keys() - restored.keys()):
        problems.append(f"no restored image in {restored_dir} for: {', '.join(only_gt)}")
    names = sorted(restored.keys() & gt.keys())
    for name in names:
        try:
            (rh, rw), (gh, gw) = (
                image_size(restored[name], "restored", max_pixels),
                image_size(gt[name], "gt", max_pixels),
            )
        except ValueError as err:
            problems.append(str(err))
            continue
        if (rh, rw) != (gh, gw):
            problems.append(f"size mismatch for {name}: restored {rw}×{rh}, gt {gw}×{gh}")
    if problems:
        raise ValueError("cannot pair the folders:\n" + "\n".join(problems))
    return [(name, restored[name], gt[name]) for name in names]


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Tensor:
    """An image file as (3, H, W) float32 RGB in [0, 1] (8/16-bit, grey, palette; alpha dropped),
    read like every other image of the package (`ucdir.data.images.read_image`).

    Raises:
        ValueError: for an unreadable or truncated file, or one over `max_pixels` pixels.
    """
    return torch.from_numpy(read_rgb(path, "image", max_pixels)).permute(2, 0, 1).contiguous()


def score_folders(
    restored_dir: str | Path,
    gt_dir: str | Path,
    metrics: Metrics,
    *,
    name: str | None = None,
    recursive: bool = False,
    device: str | torch.device = "cpu",
    max_pixels: int = MAX_PIXELS,
) -> FolderScores:
    """Scores every restored image against the ground-truth image of the same name.

    Args:
        restored_dir: folder of restored images (any method's outputs).
        gt_dir: folder of ground-truth images.
        metrics: the scorer; reset first, then fed one pair at a time (sizes may differ).
        name: the method's name in the table; the restored folder's name when None.
        recursive: also pair images in sub-folders (by relative path).
        device: where the metric networks run.
        max_pixels: an image claiming more pixels is an error (a decompression bomb).

    Returns:
        The table row, the per-image rows and the protocol.
    """
    pairs = pair_images(restored_dir, gt_dir, recursive, max_pixels)
    metrics.reset()
    metrics.to(device)
    for i, (key, restored_path, gt_path) in enumerate(pairs, 1):
        restored, gt = (
            read_image(p, max_pixels).unsqueeze(0).to(device) for p in (restored_path, gt_path)
        )
        metrics.update(restored, gt, names=[key])
        if i % 50 == 0 or i == len(pairs):
            log.info("scored %d/%d images", i, len(pairs))
    result = metrics.compute()
    method = name or Path(restored_dir).resolve().name
    protocol = {
        "protocol": "UCDIR paper §4.2 (official eval1.py), see ucdir.metrics",
        "restored": str(Path(restored_dir).resolve()),
        "gt": str(Path(gt_dir).resolve()),
        "pairing": "by file name without extension" + (", recursive" if recursive else ""),
        "pairs": len(pairs),
        **metrics.protocol(),
        "skipped": result.skipped,  # also what the data could not give (small images)
    }
    return FolderScores([results_row(method, result)], result.per_image, protocol)


def _check_output_dir(out_dir: Path, inputs: Sequence[str | Path]) -> None:
    for folder in inputs:
        if out_dir.resolve() == Path(folder).resolve():
            raise ValueError(f"the run directory {out_dir} is an input folder; choose another one")


def score_mode(cfg: DictConfig, out_dir: Path) -> FolderScores:
    """`mode=score`: scores `cfg.restored` against `cfg.gt` and writes the results files."""
    for key in ("restored", "gt"):
        if cfg.get(key) is None:
            raise ValueError(f"mode=score needs {key}=<folder>")
    _check_output_dir(out_dir, [cfg.restored, cfg.gt])
    metrics = _metrics(cfg)
    scores = score_folders(
        cfg.restored,
        cfg.gt,
        metrics,
        name=cfg.name,
        recursive=cfg.recursive,
        device=resolve_device(str(cfg.device)),
        max_pixels=int(cfg.get("max_pixels", MAX_PIXELS)),
    )
    write_results(scores.rows, out_dir, scores.protocol, scores.per_image)
    return scores


def _metrics(cfg: DictConfig) -> Metrics:
    try:
        return instantiate(cfg.protocol)
    except InstantiationException as err:
        # Surface the scorer's own message (a missing weights file, a bad option), not Hydra's.
        if isinstance(err.__cause__, MetricUnavailableError | CorruptWeightsError | ValueError):
            raise err.__cause__ from None
        raise


def _input_is_an_image(cfg: DictConfig) -> bool:
    """The degraded input can be scored against gt (same channels; not packed raw)."""
    task = cfg.task
    return int(task.get("lq_channels", 3)) == int(task.get("channels", 3))


def model_mode(cfg: DictConfig, out_dir: Path) -> FolderScores:
    """`mode=model`: restores the task's test split with a checkpoint and scores it.

    Rows: the restoration (with the sampler, its steps and the seconds per image of `restore()`,
    at fidelity `guidance`; the first sample); with `score_x_init`, the checkpoint's initial
    prediction x_init (the regression-vs-diffusion gap of the paper's tables); with
    `num_samples` K > 1, the per-pixel mean of the K samples; with `score_input`, the degraded
    input itself (e.g. the JPEG). The restored images are written to
    `<run dir>/restored/` (with `save_images=true`, x_init to `<run dir>/x_init/`), so the same
    numbers can be recomputed later with `mode=score`.
    """
    if not (cfg.get("ckpt_path") or cfg.get("pretrained")):
        raise ValueError(
            "mode=model needs ckpt_path=<checkpoint of a ucdir training run> or "
            "pretrained=<exported folder | shipped model | user/repo>"
        )
    session = RestoreSession.open(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    metrics = _metrics(cfg).to(session.device)
    metrics.reset()
    scored = {"restored": metrics}
    if cfg.score_x_init:
        scored["x_init"] = metrics.spawn()
    if session.num_samples > 1:
        scored["mean"] = metrics.spawn()
    if cfg.get("score_input", False) and _input_is_an_image(cfg):
        scored["input"] = metrics.spawn()
    if cfg.save_images:
        for kind in scored:
            (out_dir / kind).mkdir(parents=True, exist_ok=True)
    seen, seconds = 0, 0.0
    loader = datamodule.test_dataloader()
    limit = None if cfg.limit is None else int(cfg.limit)
    total = len(loader) if limit is None else min(len(loader), limit)
    progress = tqdm(total=total, desc="restoring", unit="batch", file=sys.stderr)
    for done in session.batches(loader, limit):
        out = done.result
        images: dict[str, Tensor] = {"restored": out.restored, "x_init": out.x_init}
        images["input"] = done.lq
        if out.mean is not None:
            images["mean"] = out.mean
        for kind, scorer in scored.items():
            scorer.update(images[kind], done.gt, names=done.names)
            if cfg.save_images:
                for name, image in zip(done.names, images[kind], strict=True):
                    write_png(image, out_dir / kind / f"{name}.png")
        seen += len(done.names)
        seconds += done.seconds
        progress.update(1)
    progress.close()
    sampler, patch, precision = session.sampler, session.patch, session.precision
    guidance, num_samples, device = session.guidance, session.num_samples, session.device
    results = {kind: scorer.compute() for kind, scorer in scored.items()}
    steps = int(getattr(sampler, "steps", 1))
    sampler_name = str(getattr(sampler, "name", type(sampler).__name__))
    protocol = {
        "protocol": "UCDIR paper §4.2 (official eval1.py), see ucdir.metrics",
        "checkpoint": str(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
        "pretrained": cfg.get("pretrained"),
        "task": cfg.task.name,
        "sampler": f"{sampler_name}, {steps} steps",
        "guidance": guidance,
        "num_samples": num_samples,
        "patch": None if patch is None else repr(patch),
        "images": seen,
        "precision": precision,
        "seconds": f"wall time of restore() per image on {device} ({precision})",
        **metrics.protocol(),
        "skipped": {k: v for r in results.values() for k, v in r.skipped.items()},
    }
    source = cfg.get("pretrained") or Path(str(cfg.ckpt_path)).stem
    name = cfg.name or f"{cfg.task.name}:{Path(str(source)).name}"
    rows = [  # the restoration first (a sweep labels the other rows by their last word)
        {
            **results_row(name, results["restored"]),
            "sampler": sampler_name,
            "steps": steps,
            "seconds": seconds / max(seen, 1),
        }
    ]
    if "x_init" in results:
        rows.append(results_row(f"{name} x_init", results["x_init"]))
    if "mean" in results:
        rows.append(results_row(f"{name} mean-of-{num_samples}", results["mean"]))
    if "input" in results:
        rows.append(results_row(f"{cfg.task.name} input", results["input"]))
    scores = FolderScores(rows, results["restored"].per_image, protocol)
    write_results(scores.rows, out_dir, scores.protocol, scores.per_image)
    return scores


def run(cfg: DictConfig, out_dir: Path) -> FolderScores:
    """Runs the mode `cfg.mode` selects ("auto": model with a ckpt_path, else score), writing
    its files into `out_dir`."""
    mode = cfg.mode
    if mode == "auto":
        mode = "model" if cfg.get("ckpt_path") or cfg.get("pretrained") else "score"
    if mode == "score":
        return score_mode(cfg, out_dir)
    if mode == "model":
        return model_mode(cfg, out_dir)
    raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    scores = run(cfg, out_dir)
    sys.stdout.write(results_markdown(scores.rows, scores.protocol))
    log.info("results written to %s", out_dir)


if __name__ == "__main__":
    run_command(main)
