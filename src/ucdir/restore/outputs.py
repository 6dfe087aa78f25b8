"""The files `python -m ucdir.restore` writes: the output folder, the plan of what goes where, the
PNGs and JSON sidecars, and when an output counts as done.

Every file is written atomically (`ucdir.atomic`), the main PNG last: its companions
(``<name>_mean.png``, ``<name>_std.png`` with several samples) first, then the sidecar
``<name>.json``, then ``<name>.png``. So an output is *done* when its PNG and all its companions
are there and its sidecar parses, and a kill at any moment leaves either a done output or one that
`skip_existing=true` computes again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

import ucdir
from ucdir.atomic import partial_files, write_text_atomic
from ucdir.png import check_bits, write_png
from ucdir.restore.core import Restoration

__all__ = ["Provenance", "check_bits", "save_restoration", "write_png"]


class Provenance(NamedTuple):
    """What produced a restoration, as its sidecar records it.

    Args:
        cfg: the restore config (``ckpt_path``, ``pretrained``, ``seed``, ``guidance``, ...).
        model_config: the model's own config (the sidecar's ``model``: `UCDIR.config`).
        weights: the weights file; `checkpoint_sha256` its hash.
        sampler, patch: the sampler and tiling used.
        scalars: the (1, K) auxiliary scalars given to the model, or None.
        device: where it ran.
        input_kind: ``image`` or ``raw``; `exposure_ratio` the raw gain (None for images).
        repaired_nonfinite: NaN / ±inf input values replaced (`repair_nonfinite=true`).
        precision: ``fp32`` or ``bf16`` (autocast), as `precision=` resolved (`ucdir.precision`).
    """

    cfg: DictConfig
    model_config: dict
    weights: Path
    checkpoint_sha256: str
    sampler: Any
    patch: Any
    scalars: Tensor | None
    device: torch.device
    input_kind: str = "image"
    exposure_ratio: float | None = None
    repaired_nonfinite: int = 0
    precision: str = "fp32"


class NonFiniteRestorationError(ValueError):
    """A restoration holds NaN or infinite values (broken weights, an overflow): never written."""


def check_finite(result: Restoration, src: Path) -> None:
    """Raises `NonFiniteRestorationError`, naming the input `src`, when any image of `result`
    (restored, and mean and spread with several samples) has a NaN or infinite value."""
    for name, image in (("restored", result.restored), ("mean", result.mean), ("std", result.std)):
        if image is None:
            continue
        bad = int(image.numel() - torch.isfinite(image).sum().item())
        if bad:
            raise NonFiniteRestorationError(
                f"restoring {src} gave {bad:,} non-finite value(s) (NaN / inf) of "
                f"{image.numel():,} in the {name} image: nothing written for it (a model with "
                "broken weights, or an overflow in half precision?)"
            )


def plain(obj: Any) -> Any:
    """A dataclass as a dict (for the JSON sidecar); anything else as it is."""
    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def save_restoration(
    result: Restoration, src: Path, out: Path, bits: int, made_by: Provenance
) -> dict[str, Any]:
    """Writes one output in the order that makes it resumable: the companions (mean, spread),
    the sidecar, then the PNG itself (a present PNG means a done output). Returns the sidecar.

    Raises:
        NonFiniteRestorationError: (a ValueError) `result` holds NaN or inf: nothing is written.
    """
    check_finite(result, src)
    cfg, sampler, patch = made_by.cfg, made_by.sampler, made_by.patch
    remove_partials(out, int(cfg.num_samples))
    if result.mean is not None and result.std is not None:
        write_png(result.mean[0], out.with_name(f"{out.stem}_mean.png"), bits)
        write_png((result.std[0] * 4).clamp(0, 1), out.with_name(f"{out.stem}_std.png"))
    sidecar = {
        "input": str(src),
        "output": str(out),
        "size": list(result.restored.shape[-2:]),
        "input_kind": made_by.input_kind,
        "exposure_ratio": made_by.exposure_ratio,
        "repaired_nonfinite": made_by.repaired_nonfinite,
        "ucdir_version": ucdir.__version__,
        "checkpoint": str(cfg.ckpt_path) if cfg.ckpt_path else None,
        "pretrained": cfg.pretrained,
        "weights": str(made_by.weights),
        "checkpoint_sha256": made_by.checkpoint_sha256,
        "seed": int(cfg.seed),
        "sampler": getattr(sampler, "name", type(sampler).__name__),
        "steps": sampler.steps,
        "schedule": plain(getattr(sampler, "schedule", None)),
        "patch": {"type": type(patch).__name__, **plain(patch)} if patch else None,
        "guidance": float(cfg.guidance),
        "num_samples": int(cfg.num_samples),
        "scalars": None if made_by.scalars is None else made_by.scalars[0].tolist(),
        "device": str(made_by.device),
        "precision": made_by.precision,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model": made_by.model_config,
    }
    write_json(sidecar, out.with_suffix(".json"))
    write_png(result.restored[0], out, bits)
    return sidecar


def write_json(data: dict[str, Any], path: Path) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str, allow_nan=False))


def check_output_dir(path: Path) -> None:
    """Checks, creating nothing, that `path` is or can become a writable folder.

    Raises:
        NotADirectoryError: `path`, or a path above it, is a file.
        PermissionError: the nearest existing folder is not writable.
    """
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"output={path}: is a file, not a folder; give a folder for the restored images"
        )
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"output={path}: {existing} is a file, so no folder can be in it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"output={path}: the folder {existing} is not writable")


def make_output_dir(path: Path) -> None:
    """Creates the output folder and proves it writable with a real temporary file.

    Raises:
        PermissionError: the folder cannot be created or written to (read-only filesystem, ACLs).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise PermissionError(f"output={path}: cannot write into this folder: {err}") from err


def companions(out: Path, num_samples: int) -> list[Path]:
    """Every file written for the output `out`, in the order they are written (`out` last)."""
    files = []
    if num_samples > 1:
        files += [out.with_name(f"{out.stem}_mean.png"), out.with_name(f"{out.stem}_std.png")]
    return [*files, out.with_suffix(".json"), out]


def is_done(out: Path, num_samples: int) -> bool:
    """The output `out` and all its companions are there and its sidecar JSON parses."""
    if not all(p.is_file() for p in companions(out, num_samples)):
        return False
    try:
        return isinstance(json.loads(out.with_suffix(".json").read_text()), dict)
    except (OSError, ValueError):
        return False


class Plan(NamedTuple):
    """What a run writes.

    Attributes:
        outputs: the output of every input, in input order.
        todo: the (input, output) pairs to compute.
        done: the outputs that are done already (skipped with `skip_existing`).
    """

    outputs: list[Path]
    todo: list[tuple[Path, Path]]
    done: list[Path]


def plan_outputs(
    inputs: Sequence[Path],
    out_dir: Path,
    num_samples: int,
    overwrite: bool,
    skip_existing: bool,
) -> Plan:
    """Output path of every input; refuses name clashes, outputs over inputs, and existing
    outputs (unless `overwrite`, or `skip_existing`: done outputs are skipped and incomplete ones
    computed again), before anything is computed.

    Raises:
        ValueError: two inputs share a name, an output would replace an input, or both
            `overwrite` and `skip_existing` are set.
        FileExistsError: outputs exist and neither `overwrite` nor `skip_existing` is set.
    """
    if overwrite and skip_existing:
        raise ValueError("overwrite=true and skip_existing=true exclude each other; pick one")
    outputs = [out_dir / f"{p.stem}.png" for p in inputs]
    if len(set(outputs)) != len(outputs):
        by_output: dict[Path, list[str]] = {}
        for src, out in zip(inputs, outputs, strict=True):
            by_output.setdefault(out, []).append(str(src))
        clashes = "; ".join(
            f"{out.name} <- {', '.join(srcs)}" for out, srcs in by_output.items() if len(srcs) > 1
        )
        raise ValueError(
            f"input: several inputs would be written to the same output (they share a file name "
            f"stem): {clashes}; rename them or restore them separately"
        )
    written = [o for p in outputs for o in companions(p, num_samples)]
    sources = {p.resolve() for p in inputs}
    clash = [o for o in written if o.resolve() in sources]
    if clash:
        raise ValueError(f"output: refusing to write over input file(s) {[str(c) for c in clash]}")
    pairs = list(zip(inputs, outputs, strict=True))
    if skip_existing:
        done = [o for o in outputs if is_done(o, num_samples)]
        return Plan(outputs, [(src, out) for src, out in pairs if out not in done], done)
    existing = [o for o in written if o.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"output: {len(existing)} output file(s) exist already (e.g. {existing[0]}); pass "
            "skip_existing=true to restore only the missing ones, overwrite=true to restore all "
            "again, or another output folder"
        )
    return Plan(outputs, pairs, [])


def remove_partials(out: Path, num_samples: int) -> None:
    """Removes the temporary files a killed run left for the files of `out`."""
    for path in companions(out, num_samples):
        for stale in partial_files(path):
            stale.unlink(missing_ok=True)
