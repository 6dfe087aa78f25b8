"""`python -m ucdir.export ckpt_path=<run>/checkpoints/last.ckpt output=<dir> [dtype=fp16]`.

Turns a training checkpoint into a shareable model folder (`ucdir.hub.UCDIR`): `model.safetensors`
(the EMA weights, as the checkpoint's `state_dict` holds them), `config.json` (both networks, the
default sampler, the task) and a model card `README.md` (task, data, steps, the last validation
metrics of the run, licence, citation). Load it with `UCDIR.load(<dir>)` or `pretrained=<dir>`;
`UCDIR.push_to_hub` shares it. ``format=official`` writes the weights in the authors' layout
instead (``I_Elatest_gen_ema.pth``, the inverse of ``python -m ucdir.convert``);
``pretrained=<folder>`` exports an exported model (e.g. a converted one) again.
``blend.pretrained=<other> blend.weight=w`` (or ``blend.ckpt_path=``) writes the network
interpolation (1 − w) × this model + w × the other, weight by weight (DNI, Wang et al. 2019, as
ESRGAN trades fidelity for perception): two models of the same networks, e.g. two students of one
teacher trained with and without a perceptual term; ``blend.predictor=`` / ``blend.denoiser=``
give one network its own share.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Literal

import hydra
import torch
from omegaconf import DictConfig

from ucdir.atomic import atomic_path
from ucdir.callbacks.resume import flatten
from ucdir.checkpoints import check_finite
from ucdir.config_files import CONFIG_DIR
from ucdir.hub import UCDIR
from ucdir.loader import load_model
from ucdir.official import RELEASE_FILES, official_state, paper_mismatch
from ucdir.overrides import reports_user_errors, run_command

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _last_validation(ckpt_path: Path) -> dict[str, float]:
    """The last `val/*` row the run's CSV logger wrote (`<run>/csv/version_*/metrics.csv`)."""
    run_dir = ckpt_path.resolve().parent.parent
    values: dict[str, float] = {}
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                found = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
                if found:
                    values = found
    return values


def _metrics_table(values: dict[str, float]) -> str:
    if not values:
        return "No validation of these weights was logged by a run's CSV logger."
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| `{k}` | {v:.4f} |" for k, v in sorted(values.items())]
    return "\n".join(lines)


def export_official(model: UCDIR, output: str | Path, dtype: str = "fp32") -> Path:
    """Writes `model`'s weights in the authors' layout (`ucdir.official`): the folder gets
    ``I_Elatest_gen_ema.pth``, a plain state dict of tensors as their code loads it (the
    official code builds the paper's networks, so only a model of that configuration fits).

    Raises:
        ValueError: networks of another configuration than the paper's (named).
    """
    differs = paper_mismatch(model.predictor_config, model.denoiser_config)
    if differs:
        raise ValueError(
            f"format=official: {differs}; the authors' code builds only the paper's networks"
        )
    state = {f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()}
    state |= {f"predictor.{k}": v for k, v in model.predictor.state_dict().items()}
    official = official_state(state)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in official.items()}
    with atomic_path(out / RELEASE_FILES[0]) as partial:
        torch.save(tensors, partial)
    return out


def _first_difference(mine: dict[str, Any], theirs: dict[str, Any], role: str) -> str | None:
    """The first setting where two network configs differ (`role.key is a here, b in the other`)."""
    a, b = flatten(mine, f"{role}."), flatten(theirs, f"{role}.")
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key):
            return f"{key} is {a.get(key)!r} here, {b.get(key)!r} in the other"
    return None


NETWORKS = {"predictor": "initial predictor", "denoiser": "diffusion network"}


def blend_models(
    model: UCDIR, other: UCDIR, shares: dict[str, float], other_name: str = "other"
) -> UCDIR:
    """Network interpolation in place: every floating-point weight and buffer of `model`'s
    network `role` becomes (1 − shares[role]) × its own + shares[role] × `other`'s (computed in
    float32; roles "predictor" and "denoiser", a missing one 0); integer buffers stay
    `model`'s. Returns `model`.

    Raises:
        ValueError: a share outside [0, 1], or networks of another configuration (the first
            differing setting named).
    """
    for role, share in shares.items():
        if role not in NETWORKS or not 0.0 <= float(share) <= 1.0:
            raise ValueError(f"blend.{role} must lie in [0, 1], got {share!r}")
    for role in NETWORKS:
        found = _first_difference(
            getattr(model, f"{role}_config"), getattr(other, f"{role}_config"), role
        )
        if found:
            raise ValueError(f"blend: {other_name} has other networks: {found}")
    for role in NETWORKS:
        theirs = getattr(other, role).state_dict()
        for key, mine in getattr(model, role).state_dict().items():
            if mine.is_floating_point():
                mixed = torch.lerp(mine.float(), theirs[key].float(), float(shares.get(role, 0)))
                mine.copy_(mixed.to(mine.dtype))
    return model


def blend_shares(blend: dict[str, Any]) -> dict[str, float]:
    """The other model's share per network from `blend.weight` (both networks) and
    `blend.predictor` / `blend.denoiser` (one network each, overriding `weight`).

    Raises:
        ValueError: a share that is not a number in [0, 1].
    """
    shares = {}
    for role in NETWORKS:
        key = role if blend.get(role) is not None else "weight"
        value = blend.get(key, 0.0)
        try:
            share = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"blend.{key} must be a number in [0, 1], got {value!r}") from None
        if not 0.0 <= share <= 1.0:  # NaN fails too
            raise ValueError(f"blend.{key} must lie in [0, 1], got {value!r}")
        shares[role] = share
    return shares


def _blend_text(shares: dict[str, float], other: str) -> str:
    def mix(share: float) -> str:
        return f"{1 - share:g} × this run + {share:g} × `{other}`"

    if len(set(shares.values())) == 1:
        return mix(shares["predictor"])
    return ", ".join(f"{NETWORKS[role]} {mix(share)}" for role, share in shares.items())


def export(
    ckpt_path: str | Path | None,
    output: str | Path,
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32",
    name: str | None = None,
    overwrite: bool = False,
    card: dict[str, Any] | None = None,
    format: Literal["ucdir", "official"] = "ucdir",
    pretrained: str | Path | None = None,
    blend: dict[str, Any] | None = None,
) -> Path:
    """Writes the model folder of a ucdir checkpoint (or of an exported model); returns the
    folder.

    Args:
        ckpt_path: a checkpoint of `python -m ucdir.train` (or None, with `pretrained`).
        output: the model folder to write.
        dtype: storage precision of the weights (loaded back as float32).
        name: the model's name in its card (default: the folder's name).
        overwrite: replace the files of an existing model folder.
        card: extra model-card fields (`data`, `wall_time`, `metrics`, `license`, ...).
        format: ``ucdir`` (`ucdir.hub.UCDIR`'s folder) or ``official`` (the authors' layout,
            `export_official`).
        pretrained: an exported folder, shipped name or hub id instead of `ckpt_path`.
        blend: ``{"ckpt_path" | "pretrained": the other model, "weight": w}``: write
            (1 − w) × this model + w × the other (`blend_models`); ``"predictor"`` /
            ``"denoiser"``: one network's share (overriding ``weight``); None: no blend.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if format not in ("ucdir", "official"):
        raise ValueError(f"format must be 'ucdir' or 'official', got {format!r}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output: {out} is a file; give a folder for the model")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output: {out} is not empty; pass overwrite=true to replace it")
    blend = {k: v for k, v in (blend or {}).items() if v is not None}
    shares = blend_shares(blend)
    other_source = {k: blend[k] for k in ("ckpt_path", "pretrained") if k in blend}
    if any(shares.values()) and not other_source:
        raise ValueError(
            "blend.weight (or blend.predictor / blend.denoiser) needs the other model: "
            "blend.pretrained=<folder | shipped model | hub id> or blend.ckpt_path=<training "
            "checkpoint>"
        )
    if len(other_source) > 1:
        raise ValueError("blend: give one of blend.pretrained and blend.ckpt_path, not both")
    if other_source and not any(shares.values()):
        raise ValueError(
            "blend: give blend.weight=w, 0 < w <= 1 (the other model's share; blend.predictor= "
            "/ blend.denoiser= per network)"
        )
    model = load_model(ckpt_path=ckpt_path, pretrained=pretrained)
    blended = ""
    if other_source:
        other = load_model(**other_source)
        other_name = str(next(iter(other_source.values())))
        blend_models(model, other, shares, other_name)
        blended = f"; weights blended (network interpolation): {_blend_text(shares, other_name)}"
    model.to(DTYPES[dtype])
    try:
        check_finite(model, str(ckpt_path or pretrained))
    except ValueError as err:
        raise ValueError(
            f"dtype={dtype}: a weight overflows this precision ({err}); export "
            "with dtype=bf16 or dtype=fp32"
        ) from None
    if format == "official":
        return export_official(model, out, dtype)
    run = model.training_run or {}
    cfg, task = run.get("config") or {}, model.task
    sampler = model.default_sampler()
    fields: dict[str, Any] = {
        "name": name or out.resolve().name,
        "title": name or out.resolve().name,
        "task": task.get("name", "unknown"),
        "data": str((cfg.get("data") or {}).get("root") or "see config.json"),
        "steps": int(run.get("global_step", 0)),
        "wall_time": "",
        "sampler": "none"
        if sampler is None
        else f"{getattr(sampler, 'name', type(sampler).__name__)}, {sampler.steps} steps",
        "dtype": dtype,
        "metrics": _metrics_table(
            _last_validation(Path(ckpt_path)) if ckpt_path and not blended else {}
        ),
        "license": "Apache-2.0 (the code); the weights also follow the training data's terms",
        "recipe": "",
        "use_args": "",  # the model's own sampler is every command's default
        "blend": blended,
    }
    fields.update(card or {})
    if overwrite:  # the mixin keeps an existing model card: replace it with this model's
        (out / "README.md").unlink(missing_ok=True)
    model.save_pretrained(out, model_card_kwargs=fields)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    given = {k: v for k, v in (cfg.get("card") or {}).items() if v is not None}
    card = {k: str(v) for k, v in given.items() if k != "recipe_file"}
    if given.get("recipe_file"):
        card["recipe"] = "\n" + Path(str(cfg.card.recipe_file)).read_text()
    if card.get("wall_time"):
        card["wall_time"] = f" ({card['wall_time']})"
    out = export(
        cfg.get("ckpt_path"),
        cfg.output,
        cfg.dtype,
        cfg.name,
        bool(cfg.overwrite),
        card,
        cfg.format,
        cfg.get("pretrained"),
        dict(cfg.get("blend") or {}),
    )
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    log.info("model written to %s: %s", out, ", ".join(f"{k} {v:,} B" for k, v in sizes.items()))


if __name__ == "__main__":
    run_command(main)
