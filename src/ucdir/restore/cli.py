"""`python -m ucdir.restore ckpt_path=…|pretrained=… input=<image or folder> output=<folder>`.

Restores images of any size with a trained checkpoint (EMA weights), writing PNGs and one JSON
sidecar per output; never writes over an input.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

import ucdir
from ucdir.checkpoints import check_targets, file_hash, load_state, read_checkpoint, run_config
from ucdir.data.images import list_images, read_image
from ucdir.restore.core import restore

log = logging.getLogger(__name__)


def load_model(
    ckpt_path: str | Path | None, pretrained: str | None, device: torch.device
) -> tuple[nn.Module, nn.Module, dict, Path]:
    """The networks of `pretrained=` (an exported folder, a shipped model or a hub id) or of
    `ckpt_path=` (a training checkpoint), exactly one of them; also their config and the weights
    file (hashed into the sidecars)."""
    if (ckpt_path is None) == (pretrained is None):
        raise ValueError(
            "give exactly one of pretrained=<exported folder | shipped model | hub id> and "
            "ckpt_path=<training checkpoint>"
        )
    if pretrained is not None:
        from ucdir.hub import UCDIR, resolve_pretrained

        model = UCDIR.load(pretrained)
        config = {
            "model": {
                "predictor": model.predictor_config,
                "denoiser": model.denoiser_config,
                "sampler": model.sampler_config,
            }
        }
        weights = Path(model.weights_file or resolve_pretrained(pretrained))
        return (
            model.predictor.to(device).eval(),
            model.denoiser.to(device).eval(),
            config,
            weights,
        )
    predictor, denoiser, cfg = load_networks(ckpt_path, device)  # type: ignore[arg-type]
    return predictor, denoiser, cfg, Path(str(ckpt_path))


def choose_sampler(sampler_cfg: Any, run_cfg: dict) -> Any:
    """The sampler of `sampler_cfg`, except for a regression model (exported or trained with the
    regression sampler), whose output is the residual itself: it always gets one forward."""
    from ucdir.diffusion.sampling import RegressionSampler

    sampler = instantiate(sampler_cfg)
    own = ((run_cfg.get("model") or {}).get("sampler") or {}).get("_target_", "")
    if str(own).endswith("RegressionSampler") and not isinstance(sampler, RegressionSampler):
        log.info("a regression model: restored with one forward (sampler=regression)")
        return RegressionSampler()
    return sampler


def load_networks(ckpt_path: str | Path, device: torch.device) -> tuple[nn.Module, nn.Module, dict]:
    """The predictor and denoiser of a ucdir checkpoint (its EMA weights when EMA had started),
    rebuilt from the run configuration stored inside it."""
    ckpt = read_checkpoint(ckpt_path)
    cfg = run_config(ckpt)
    for part in ("predictor", "denoiser"):  # a config from a file builds only our networks
        check_targets(cfg["model"][part], ("ucdir.models.",), f"ckpt_path: model.{part}")
    predictor = instantiate(cfg["model"]["predictor"])
    denoiser = instantiate(cfg["model"]["denoiser"])
    load_state(predictor, ckpt, prefix="predictor.")
    load_state(denoiser, ckpt, prefix="denoiser.")
    return predictor.to(device).eval(), denoiser.to(device).eval(), cfg


def _tempfile(path: Path, suffix: str) -> str:
    """A temporary file beside `path` with the usual permissions (mkstemp makes them 0600)."""
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def write_png(image: Tensor, path: Path, bits: int = 8) -> None:
    """Writes a (3, H, W) [0, 1] image as an 8- or 16-bit PNG, atomically (temp file + rename)."""
    array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    tmp = _tempfile(path, ".png")
    try:
        if bits == 16:
            import cv2

            cv2.imwrite(tmp, (array[..., ::-1] * 65535).round().astype(np.uint16))
        else:
            Image.fromarray((array * 255).round().astype(np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(data: dict[str, Any], path: Path) -> None:
    """Atomic JSON write."""
    tmp = _tempfile(path, ".json")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def _inputs(cfg: DictConfig) -> list[Path]:
    src = Path(str(cfg.input))
    if src.is_dir():
        return list_images(src, "input")
    if not src.is_file():
        raise FileNotFoundError(f"input: {str(src)!r} is neither an image file nor a folder")
    return [src]


def _plan(inputs: list[Path], out_dir: Path, num_samples: int, overwrite: bool) -> list[Path]:
    """Output path of every input; refuses name clashes, outputs over inputs, and (unless
    overwrite=true) existing outputs, before anything is computed."""
    outputs = [out_dir / f"{p.stem}.png" for p in inputs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("input: several inputs share a file name stem; restore them separately")
    written = [o for p in outputs for o in _companions(p, num_samples)]
    sources = {p.resolve() for p in inputs}
    clash = [o for o in written if o.resolve() in sources]
    if clash:
        raise ValueError(f"output: refusing to write over input file(s) {[str(c) for c in clash]}")
    existing = [o for o in written if o.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"output: {len(existing)} output file(s) exist already (e.g. {existing[0]}); "
            "pass overwrite=true or another output folder"
        )
    return outputs


def _companions(out: Path, num_samples: int) -> list[Path]:
    files = [out, out.with_suffix(".json")]
    if num_samples > 1:
        files += [out.with_name(f"{out.stem}_mean.png"), out.with_name(f"{out.stem}_std.png")]
    return files


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def _scalars(cfg: DictConfig, names: tuple[str, ...], device: torch.device) -> Tensor | None:
    if not names:
        return None
    given = dict(cfg.scalars or {})
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
    """Restores every input; returns the written output paths."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    inputs = _inputs(cfg)
    predictor, denoiser, run_cfg, weights = load_model(cfg.ckpt_path, cfg.pretrained, device)
    out_dir = Path(str(cfg.output))
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = _plan(inputs, out_dir, int(cfg.num_samples), bool(cfg.overwrite))
    sampler = choose_sampler(cfg.sampler, run_cfg)
    patch = instantiate(cfg.patch) if cfg.get("patch") is not None else None
    scalars = _scalars(cfg, tuple(getattr(denoiser, "aux_scalars", ())), device)
    ckpt_hash = file_hash(weights)
    failed: list[str] = []
    for src, out in tqdm(list(zip(inputs, outputs, strict=True)), desc="images", unit="img"):
        try:
            lq = torch.from_numpy(read_image(src, "input")).permute(2, 0, 1)[None].to(device)
        except (ValueError, FileNotFoundError) as err:
            log.error("%s", err)
            failed.append(str(src))
            continue
        steps = tqdm(total=sampler.steps * int(cfg.num_samples), desc=src.name, leave=False)
        result = restore(
            lq,
            predictor,
            denoiser,
            sampler,
            patch,
            torch.Generator(device=device).manual_seed(int(cfg.seed)),
            scalars=scalars,
            guidance=float(cfg.guidance),
            num_samples=int(cfg.num_samples),
            callback=_progress(steps),
        )
        steps.close()
        write_png(result.restored[0], out, int(cfg.bits))
        if result.mean is not None and result.std is not None:
            write_png(result.mean[0], out.with_name(f"{out.stem}_mean.png"), int(cfg.bits))
            write_png((result.std[0] * 4).clamp(0, 1), out.with_name(f"{out.stem}_std.png"))
        write_json(
            {
                "input": str(src),
                "output": str(out),
                "size": list(lq.shape[-2:]),
                "ucdir_version": ucdir.__version__,
                "checkpoint": str(cfg.ckpt_path) if cfg.ckpt_path else None,
                "pretrained": cfg.pretrained,
                "weights": str(weights),
                "checkpoint_sha256": ckpt_hash,
                "seed": int(cfg.seed),
                "sampler": getattr(sampler, "name", type(sampler).__name__),
                "steps": sampler.steps,
                "schedule": _plain(getattr(sampler, "schedule", None)),
                "patch": {"type": type(patch).__name__, **_plain(patch)} if patch else None,
                "guidance": float(cfg.guidance),
                "num_samples": int(cfg.num_samples),
                "device": str(device),
                "config": OmegaConf.to_container(cfg, resolve=True),
                "model": run_cfg.get("model"),
            },
            out.with_suffix(".json"),
        )
    if failed:
        raise ValueError(f"input: {len(failed)} file(s) could not be read: {failed}")
    return outputs
