"""`python -m ucdir.convert official=<release folder | .pth> output=<folder>`: the authors' SID
model as an exported ucdir model folder.

The release (zhangyi-3/UCDIR) is a folder with ``I_Elatest_gen_ema.pth`` (the EMA weights the
paper evaluates), ``I_Elatest_gen.pth`` (raw weights + the training schedule's buffers) and
possibly ``I_Elatest_opt.pth`` (optimizer state). The EMA file is preferred; the key set is
checked exactly against the paper's networks (`ucdir.official`); the output is what
`python -m ucdir.export` writes (`model.safetensors`, `config.json`, a model card), so
``pretrained=<folder>`` uses it everywhere. The inverse is ``python -m ucdir.export …
format=official``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ucdir.config_files import CONFIG_DIR
from ucdir.hub import UCDIR
from ucdir.official import (
    OfficialLayoutError,
    convert_state,
    read_release,
    release_file,
    to_official,
)
from ucdir.overrides import reports_user_errors, run_command

log = logging.getLogger(__name__)

RECIPE = """
## Where the weights come from

The authors' release of "A Unified Conditional Framework for Diffusion-based Image Restoration"
(Zhang et al., arXiv:2305.20049; github.com/zhangyi-3/UCDIR), trained on SID Sony for 500k
steps on 8 A100s (the paper), converted by `python -m ucdir.convert` ({source}; {notes}). The
weights follow the terms of the authors' release; cite their paper.

## Inputs

The model was trained on **8-bit sRGB renderings** of the amplified short exposures (the
authors' pre-processed `test_LH0.04s/input` images), not on raw files: give it such images. The
paper's evaluation: `sampler=ddpm` (its default here: 50 ancestral steps over a linear β
schedule 1e-6 → 0.4), full 2120×1416 images with inter-step patch splitting.
"""


def _plain(node: Any) -> dict[str, Any]:
    container = OmegaConf.to_container(node, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"expected a config node, got {type(container).__name__}")
    return {str(k): v for k, v in container.items()}


def convert(
    official: str | Path,
    output: str | Path,
    configs: Mapping[str, Mapping[str, Any]],
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes the model folder of the authors' release at `official`; returns the folder.

    Args:
        official: the release folder or one of its `.pth` weight files.
        output: the model folder to write.
        configs: the ``predictor``, ``denoiser`` and ``sampler`` configs and the ``task`` of
            the converted model (`configs/convert.yaml` composes the paper's).
        name: the model's name in its card (default: the folder's name).
        overwrite: replace the files of an existing model folder.

    Raises:
        FileNotFoundError: nothing at `official`, or no weights file in the folder.
        OfficialLayoutError: a file that is not the authors' model (naming the first offending
            key), or not plain tensors.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output: {out} is a file; give a folder for the model")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output: {out} is not empty; pass overwrite=true to replace it")
    path, source = release_file(official)
    state = read_release(path)
    model = UCDIR(
        dict(configs["predictor"]),
        dict(configs["denoiser"]),
        dict(configs["sampler"]),
        dict(configs["task"]),
    )
    expected = {f"predictor.{k}": v.shape for k, v in model.predictor.state_dict().items()}
    expected |= {f"denoiser.{k}": v.shape for k, v in model.denoiser.state_dict().items()}
    weights, notes = convert_state(state, expected, f"official: {path}")
    model.load_state_dict(weights, strict=True)
    bad = [k for k, v in weights.items() if not bool(v.isfinite().all())]
    if bad:
        raise OfficialLayoutError(
            f"official: {path}: {to_official(bad[0])} holds NaN or infinite values"
        )
    for line in [source, *notes]:
        log.info("%s", line)
    title = name or out.resolve().name
    sampler = model.default_sampler()
    fields = {
        "name": title,
        "title": title,
        "task": "sid (extreme low-light, SID Sony; 8-bit sRGB renderings in and out)",
        "data": "SID Sony (the authors' training, per the paper)",
        "steps": "500k",
        "wall_time": " (the authors' run, 8 A100s)",
        "sampler": f"{getattr(sampler, 'name', type(sampler).__name__)}, {sampler.steps} steps "
        "(the paper's SID evaluation)",
        "dtype": "fp32",
        "metrics": "Not measured by the conversion; see the paper's Table 1.",
        "license": "the terms of the authors' release (github.com/zhangyi-3/UCDIR)",
        "recipe": RECIPE.format(source=source, notes="; ".join(notes) or "used as is"),
        "use_args": "",
    }
    if overwrite:
        (out / "README.md").unlink(missing_ok=True)
    # the card's licence is the authors' terms, not this package's (this model's copy of it)
    model._hub_mixin_info = copy.deepcopy(UCDIR._hub_mixin_info)
    model._hub_mixin_info.model_card_data.license = "other"
    model.save_pretrained(out, model_card_kwargs=fields)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="convert")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    configs = {
        "predictor": _plain(cfg.model.predictor),
        "denoiser": _plain(cfg.model.denoiser),
        "sampler": _plain(cfg.sampler),
        "task": _plain(cfg.task),
    }
    out = convert(cfg.official, cfg.output, configs, cfg.name, bool(cfg.overwrite))
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    log.info("model written to %s: %s", out, ", ".join(f"{k} {v:,} B" for k, v in sizes.items()))


if __name__ == "__main__":
    run_command(main)
