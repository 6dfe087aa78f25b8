"""Objects from configs that come from files: an allow-list of exact classes, validated arguments,
bounded sizes. The only way a `config.json`, a checkpoint's stored run config or a hub repo
becomes networks, a sampler or a schedule.

A file is data. Hydra's `instantiate` resolves every dotted segment of a `_target_` with
`getattr`, so a prefix check on the string is no guard (`ucdir.models.denoiser.os.system` starts
with `ucdir.models.`). Here a `_target_` is looked up as an exact string in `ALLOWED` (nothing is
imported or resolved by name), every argument is checked against the class's own list (type,
range, choices; unknown keys refused), Hydra's special keys (`_args_`, `_partial_`, `_convert_`,
`_recursive_`, ...) are refused, and nested configs are allowed only where a class takes one (a
sampler's `schedule` and `scheduler`). Each refusal names the key. Nothing is built until the
whole config has passed.

Before a network is allocated its parameter count is measured on the meta device (no memory),
and the diffusion network's activation memory for one tile is estimated the same way; both are
refused above `Limits` (environment variables `UCDIR_MAX_PARAMS`, `UCDIR_MAX_ACTIVATION_GB`).

The configs a user composes on the command line are not files: they keep Hydra's `instantiate`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from torch import nn

from ucdir.diffusion.memory import peak_bytes
from ucdir.diffusion.sampling import DistilledSampler, RegressionSampler, Sampler
from ucdir.diffusion.schedules import CosineSchedule, LinearSchedule
from ucdir.models.denoiser import ConditionalUNet
from ucdir.models.predictor import InitialPredictor
from ucdir.types import Cond

Role = Literal["predictor", "denoiser", "sampler", "schedule", "scheduler"]

TARGET = "_target_"
PARTIAL = "_partial_"


class UnsafeConfigError(ValueError):
    """A config from a file names something outside the allow-list, or a value out of bounds:
    refused before anything was imported, called or allocated."""


# --- argument checks: each returns the normalised value or raises naming the key -----------


Check = Callable[[Any, str], Any]


def _fail(where: str, message: str) -> UnsafeConfigError:
    return UnsafeConfigError(f"{where}: {message}")


def integer(lo: int, hi: int) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise _fail(where, f"must be in {lo}..{hi}, got {value!r}")
        return value

    return check


def number(lo: float, hi: float, optional: bool = False) -> Check:
    def check(value: Any, where: str) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(where, f"must be a number, got {value!r}")
        if not (math.isfinite(value) and lo <= value <= hi):
            raise _fail(where, f"must be in [{lo}, {hi}], got {value!r}")
        return float(value)

    return check


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {value!r}")
    return value


def choice(*values: Any) -> Check:
    def check(value: Any, where: str) -> Any:
        if isinstance(value, bool) or value not in values:
            raise _fail(where, f"must be one of {list(values)}, got {value!r}")
        return value

    return check


def integers(lo: int, hi: int, max_len: int, min_len: int = 0) -> Check:
    item = integer(lo, hi)

    def check(value: Any, where: str) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or not min_len <= len(value) <= max_len:
            raise _fail(where, f"must be a list of {min_len}..{max_len} integers, got {value!r}")
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return check


NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def names(max_len: int) -> Check:
    def check(value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or len(value) > max_len:
            raise _fail(where, f"must be a list of at most {max_len} names, got {value!r}")
        for i, v in enumerate(value):
            if not isinstance(v, str) or not NAME.match(v):
                raise _fail(f"{where}[{i}]", f"must be a name (letters, digits, _), got {v!r}")
        return tuple(value)

    return check


def nested(role: Role) -> Check:
    def check(value: Any, where: str) -> Any:
        return _checked(value, role, where)

    return check


# --- the allow-list -------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One allowed class: the exact object built, and the only arguments it may get."""

    cls: Callable[..., Any]
    args: Mapping[str, Check]
    partial: bool = False  # built as functools.partial (a diffusers scheduler class)


STEPS = integer(1, 10_000)
TIMESTEPS = choice("linspace", "leading", "trailing")
SCHEDULERS: dict[str, Spec] = {
    "diffusers.DDPMScheduler": Spec(
        DDPMScheduler,
        {
            "variance_type": choice(
                "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"
            ),
            "clip_sample": boolean,
            "timestep_spacing": TIMESTEPS,
            "steps_offset": integer(0, 10),
        },
        partial=True,
    ),
    "diffusers.DDIMScheduler": Spec(
        DDIMScheduler,
        {
            "clip_sample": boolean,
            "set_alpha_to_one": boolean,
            "timestep_spacing": TIMESTEPS,
            "steps_offset": integer(0, 10),
        },
        partial=True,
    ),
    "diffusers.DPMSolverMultistepScheduler": Spec(
        DPMSolverMultistepScheduler,
        {
            "algorithm_type": choice(
                "dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"
            ),
            "solver_order": integer(1, 3),
            "solver_type": choice("midpoint", "heun"),
            "lower_order_final": boolean,
            "use_karras_sigmas": boolean,
            "final_sigmas_type": choice("zero", "sigma_min"),
            "timestep_spacing": TIMESTEPS,
        },
        partial=True,
    ),
    "diffusers.EulerDiscreteScheduler": Spec(
        EulerDiscreteScheduler,
        {
            "timestep_spacing": TIMESTEPS,
            "use_karras_sigmas": boolean,
            "steps_offset": integer(0, 10),
        },
        partial=True,
    ),
    "diffusers.HeunDiscreteScheduler": Spec(
        HeunDiscreteScheduler,
        {
            "timestep_spacing": TIMESTEPS,
            "use_karras_sigmas": boolean,
            "steps_offset": integer(0, 10),
        },
        partial=True,
    ),
    "diffusers.UniPCMultistepScheduler": Spec(
        UniPCMultistepScheduler,
        {
            "solver_order": integer(1, 3),
            "solver_type": choice("bh1", "bh2"),
            "predict_x0": boolean,
            "lower_order_final": boolean,
            "timestep_spacing": TIMESTEPS,
        },
        partial=True,
    ),
}
LEVELS = integer(1, 100_000)
BETA = number(0.0, 1.0)
SCHEDULES: dict[str, Spec] = {
    "ucdir.diffusion.schedules.LinearSchedule": Spec(
        LinearSchedule, {"num_steps": LEVELS, "beta_start": BETA, "beta_end": BETA}
    ),
    "ucdir.diffusion.schedules.CosineSchedule": Spec(
        CosineSchedule, {"num_steps": LEVELS, "s": number(0.0, 1.0), "max_beta": BETA}
    ),
}
CLIP = number(0.0, 100.0, optional=True)
SAMPLERS: dict[str, Spec] = {
    "ucdir.diffusion.sampling.Sampler": Spec(
        Sampler,
        {
            "scheduler": nested("scheduler"),
            "schedule": nested("schedule"),
            "steps": STEPS,
            "clip_residual": CLIP,
            "eta": number(0.0, 1.0),
        },
    ),
    "ucdir.diffusion.sampling.RegressionSampler": Spec(RegressionSampler, {"steps": STEPS}),
    # the name model files exported before the sampler moved to ucdir.diffusion.sampling give
    "ucdir.diffusion.distill.DistilledSampler": Spec(
        DistilledSampler, {"schedule": nested("schedule"), "steps": STEPS, "clip_residual": CLIP}
    ),
    "ucdir.diffusion.sampling.DistilledSampler": Spec(
        DistilledSampler, {"schedule": nested("schedule"), "steps": STEPS, "clip_residual": CLIP}
    ),
}
CHANNELS = integer(1, 16)
PREDICTORS: dict[str, Spec] = {
    name: Spec(
        InitialPredictor,
        {
            "in_channels": choice(3, 4),
            "out_channels": CHANNELS,
            "width": integer(1, 1024),
            "global_residual": boolean,
        },
    )
    for name in ("ucdir.models.predictor.InitialPredictor", "ucdir.models.InitialPredictor")
}
DENOISERS: dict[str, Spec] = {
    name: Spec(
        ConditionalUNet,
        {
            "channels": CHANNELS,
            "lq_channels": CHANNELS,
            "width": integer(2, 2048),
            "mults": integers(1, 64, max_len=8, min_len=1),
            "blocks": integer(1, 16),
            "attn_levels": integers(0, 7, max_len=8),
            "mid_attn": boolean,
            "kernels": integer(1, 64),
            "norm": choice("layer", "group", "none"),
            "act": choice("swish", "relu"),
            "guide": choice("initial", "degraded", "internal", "none"),
            "integration": choice("akgm", "add", "concat", "adain", "dvsr"),
            "aux_scalars": names(16),
            "dropout": number(0.0, 1.0),
            "prediction_type": choice("epsilon", "sample", "v_prediction"),
        },
    )
    for name in ("ucdir.models.denoiser.ConditionalUNet", "ucdir.models.ConditionalUNet")
}
ALLOWED: dict[Role, dict[str, Spec]] = {
    "predictor": PREDICTORS,
    "denoiser": DENOISERS,
    "sampler": SAMPLERS,
    "schedule": SCHEDULES,
    "scheduler": SCHEDULERS,
}
"""Per role, the exact `_target_` strings a file may name and what each builds."""


# --- checking and building -------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A config that passed: its spec, the target string and the normalised arguments (nested
    ones `Checked` too). Build it with `build`, write it back with `as_config`."""

    target: str
    spec: Spec
    args: Mapping[str, Any]

    def build(self) -> Any:
        kwargs = {k: v.build() if isinstance(v, Checked) else v for k, v in self.args.items()}
        if self.spec.partial:
            return functools.partial(self.spec.cls, **kwargs)
        return self.spec.cls(**kwargs)

    def as_config(self) -> dict[str, Any]:
        """The plain config (JSON-ready), in the form exported folders use."""
        out: dict[str, Any] = {TARGET: self.target}
        if self.spec.partial:
            out[PARTIAL] = True
        for key, value in self.args.items():
            if isinstance(value, Checked):
                out[key] = value.as_config()
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        return out


def _checked(node: Any, role: Role, where: str) -> Checked:
    if not isinstance(node, Mapping):
        raise _fail(where, f"must be a config with {TARGET}, got {type(node).__name__}")
    target = node.get(TARGET)
    allowed = ALLOWED[role]
    if not isinstance(target, str) or target not in allowed:
        raise _fail(
            f"{where}.{TARGET}",
            f"refused {target!r}: a file may name only {sorted(allowed)} here "
            "(nothing was imported or run)",
        )
    spec = allowed[target]
    args: dict[str, Any] = {}
    for key, value in node.items():
        if not isinstance(key, str):
            raise _fail(where, f"keys must be text, got {key!r}")
        if key == TARGET:
            continue
        if key == PARTIAL and spec.partial:
            if value is not True:
                raise _fail(f"{where}.{key}", f"a scheduler is always a partial, got {value!r}")
            continue
        if key.startswith("_"):
            raise _fail(
                f"{where}.{key}",
                "Hydra's special keys are not read from files (nothing was imported or run)",
            )
        if key not in spec.args:
            raise _fail(
                f"{where}.{key}",
                f"not an argument a file may give {target} (allowed: {sorted(spec.args)})",
            )
        args[key] = spec.args[key](value, f"{where}.{key}")
    return Checked(target, spec, args)


def check(node: Any, role: Role, where: str) -> Checked:
    """Validates a config from a file for `role` without building anything.

    Raises:
        UnsafeConfigError: naming the first key outside the allow-list or out of bounds.
    """
    return _checked(node, role, where)


def build(node: Any, role: Role, where: str) -> Any:
    """The object of a sampler / schedule config from a file (checked first, then built).

    Raises:
        UnsafeConfigError: naming the offending key; nothing was built.
        ValueError: the class refused the (allowed) values, with `where` named.
    """
    checked = check(node, role, where)
    try:
        return checked.build()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class Limits:
    """Bounds on what a config from a file may allocate.

    Args:
        max_params: parameters of both networks together (default 1e9 = 4 GB in fp32; the
            paper's model has 105 M). Environment: `UCDIR_MAX_PARAMS`.
        max_activation_gb: estimated peak activation memory of one no-grad forward of the
            diffusion network on one `tile`² tile at batch 1 (the default model: about 0.5 GB
            at 256²). Environment: `UCDIR_MAX_ACTIVATION_GB`.
        tile: the tile the activation estimate is made for (the default patch splitting's).
    """

    max_params: int = 1_000_000_000
    max_activation_gb: float = 32.0
    tile: int = 256

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_params=int(_env_number("UCDIR_MAX_PARAMS", cls.max_params)),
            max_activation_gb=_env_number("UCDIR_MAX_ACTIVATION_GB", cls.max_activation_gb),
        )


def _meta_network(checked: Checked, where: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return checked.build()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def _activation_bytes(denoiser: nn.Module, tile: int) -> int:
    lq_channels, channels = getattr(denoiser, "lq_channels", 3), getattr(denoiser, "channels", 3)
    lq = torch.empty(1, int(lq_channels), 1, 1, device="meta")
    x = torch.empty(1, int(channels), 1, 1, device="meta")
    n = len(getattr(denoiser, "aux_scalars", ()))
    scalars = torch.empty(1, n, device="meta") if n else None
    return peak_bytes(denoiser, Cond(lq, x, scalars), tile)


@dataclass(frozen=True)
class Networks:
    """Both networks of a model built from a file, with their normalised configs."""

    predictor: nn.Module
    denoiser: nn.Module
    predictor_config: dict[str, Any]
    denoiser_config: dict[str, Any]


def build_networks(
    predictor: Any, denoiser: Any, where: str, limits: Limits | None = None
) -> Networks:
    """The initial predictor and diffusion network of a config from a file: checked against the
    allow-list, measured on the meta device, refused above `limits`, then allocated.

    Raises:
        UnsafeConfigError: a key outside the allow-list or out of bounds, or a model above the
            limits (with the numbers and the variable that raises them); nothing was allocated.
        ValueError: the classes refused the (allowed) values.
    """
    limits = limits or Limits.from_env()
    parts = {
        "predictor": check(predictor, "predictor", f"{where}predictor"),
        "denoiser": check(denoiser, "denoiser", f"{where}denoiser"),
    }
    metas = {name: _meta_network(c, f"{where}{name}") for name, c in parts.items()}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in metas.items()}
    total = sum(counts.values())
    if total > limits.max_params:
        raise UnsafeConfigError(
            f"{where}model: {total:,} parameters (predictor {counts['predictor']:,}, denoiser "
            f"{counts['denoiser']:,}) is above the limit of {limits.max_params:,}; nothing was "
            "allocated (raise it with UCDIR_MAX_PARAMS=<count> if you trust this model)"
        )
    activation = _activation_bytes(metas["denoiser"], limits.tile) / 2**30
    if activation > limits.max_activation_gb:
        raise UnsafeConfigError(
            f"{where}denoiser: one {limits.tile}² tile needs about {activation:.1f} GB of "
            f"activations, above the limit of {limits.max_activation_gb:g} GB; nothing was "
            "allocated (raise it with UCDIR_MAX_ACTIVATION_GB=<GB> if you trust this model)"
        )
    built = {name: c.build() for name, c in parts.items()}
    return Networks(
        built["predictor"],
        built["denoiser"],
        parts["predictor"].as_config(),
        parts["denoiser"].as_config(),
    )


PLAIN_DEPTH = 4
PLAIN_ITEMS = 256
PLAIN_TEXT = 4096


def check_plain(node: Any, where: str, depth: int = 0) -> Any:
    """Plain, bounded data (text, numbers, booleans, null, short lists and mappings with text
    keys, nothing named `_target_` or `_...`): the `task` facts of a model file.

    Raises:
        UnsafeConfigError: naming the key.
    """
    if depth > PLAIN_DEPTH:
        raise _fail(where, f"nested deeper than {PLAIN_DEPTH} levels")
    if node is None or isinstance(node, bool | int):
        return node
    if isinstance(node, float):
        if not math.isfinite(node):
            raise _fail(where, f"must be finite, got {node!r}")
        return node
    if isinstance(node, str):
        if len(node) > PLAIN_TEXT:
            raise _fail(where, f"text longer than {PLAIN_TEXT} characters")
        return node
    if isinstance(node, list | tuple):
        if len(node) > PLAIN_ITEMS:
            raise _fail(where, f"more than {PLAIN_ITEMS} items")
        return [check_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node)]
    if isinstance(node, Mapping):
        if len(node) > PLAIN_ITEMS:
            raise _fail(where, f"more than {PLAIN_ITEMS} keys")
        out = {}
        for key, value in node.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise _fail(f"{where}.{key}", "keys must be plain text not starting with _")
            out[key] = check_plain(value, f"{where}.{key}", depth + 1)
        return out
    raise _fail(where, f"must be plain data, got {type(node).__name__}")
