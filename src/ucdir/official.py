"""The authors' checkpoint layout (zhangyi-3/UCDIR, `ResiGaussianGuideDY` over `DY3h` and the SID
UNet) and ours: key names both ways, and the release's files read as plain tensors.

The layouts differ only in names (the shapes, and the kernel bases' grouped layout with output
channel o = c·N + n, are the same: `ucdir.models.guidance`), so converting is renaming:

    official                                        ours
    denoise_fn.noise_level_mlp.{1,3}.*              denoiser.embed.mlp.{0,2}.*
    denoise_fn.downs.0.*                            denoiser.conv_in.*
    denoise_fn.downs.<i>.* (i ≥ 1)                  denoiser.down.<i-1>.*
    denoise_fn.mid.<i>.* / ups.<i>.*                denoiser.mid.<i>.* / up.<i>.*
    denoise_fn.final_conv.*                         denoiser.head.*
      res_block. / noise_func. / conv2.{0,2}.         block. / scalar.net. / spatial.{proj,mix}.
      spdyconv. / res_conv.                           second.bases. / shortcut.
    predictor.conv<L>_<k>.* (L 1-5)                 predictor.down.<L-1>.<0|2>.*
    predictor.upv<L>.* (L 6-9)                      predictor.up.<L-6>.*
    predictor.conv<L>_<k>.* (L 6-9)                 predictor.dec.<L-6>.<0|2>.*
    predictor.conv10_1.*                            predictor.out.*

The raw-weights file (``I_Elatest_gen.pth``) also holds the 12 noise-schedule buffers of the
training wrapper (`SCHEDULE_BUFFERS`); they are not weights and are dropped. Facts from
``shared/reference/official-sid-checkpoint-keys.tsv``; no official code is used.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
"""Top-level buffers of the authors' training wrapper: the 2000-step schedule, not weights."""

RELEASE_FILES = ("I_Elatest_gen_ema.pth", "I_Elatest_gen.pth")
"""The release's weight files, the preferred one first (evaluation uses the EMA weights)."""

OPTIMIZER_FILE = "I_Elatest_opt.pth"

MAX_FILE_BYTES = 2 << 30
"""A release file larger than this (the full model is 420 MB in fp32) is refused unread."""

# block-internal renames, official -> ours (applied to the part after the block index)
_BLOCK = (
    ("res_block.noise_func.", "block.scalar.net."),
    ("res_block.conv2.0.", "block.spatial.proj."),
    ("res_block.conv2.2.", "block.spatial.mix."),
    ("res_block.spdyconv.", "block.second.bases."),
    ("res_block.res_conv.", "block.shortcut."),
    ("res_block.", "block."),
)
# top-level denoiser renames, official -> ours
_TOP = (
    ("noise_level_mlp.1.", "embed.mlp.0."),
    ("noise_level_mlp.3.", "embed.mlp.2."),
    ("downs.0.", "conv_in."),
    ("final_conv.", "head."),
)
_PREDICTOR_CONV = re.compile(r"predictor\.conv(\d+)_([12])\.(weight|bias)")
_PREDICTOR_UP = re.compile(r"predictor\.upv([6-9])\.(weight|bias)")
_OURS_PREDICTOR = re.compile(r"predictor\.(down|dec)\.(\d+)\.([02])\.(weight|bias)")


PAPER_NETWORKS: dict[str, dict[str, object]] = {
    "predictor": {"in_channels": 3, "out_channels": 3, "width": 32, "global_residual": False},
    "denoiser": {
        "channels": 3,
        "lq_channels": 3,
        "width": 64,
        "mults": [1, 2, 4, 8, 8],
        "blocks": 2,
        "attn_levels": [3],
        "mid_attn": True,
        "kernels": 8,
        "norm": "layer",
        "act": "swish",
        "guide": "initial",
        "integration": "akgm",
        "aux_scalars": [],
    },
}
"""The constructor arguments of the authors' SID networks (config/sid.yaml: inner 64, mults
1-2-4-8-8, attention at 1/8, 2 blocks, 8 bases; the SID UNet on RGB): the only configuration
their code builds, so the only one the official layout can carry."""


def paper_mismatch(predictor: Mapping[str, object], denoiser: Mapping[str, object]) -> str | None:
    """The first constructor argument in which the given network configs differ from the
    authors' (``denoiser.width: 16, the paper's 64``), or None."""
    for role, given in (("predictor", predictor), ("denoiser", denoiser)):
        for key, value in PAPER_NETWORKS[role].items():
            have = given.get(key)
            if (list(have) if isinstance(have, (list, tuple)) else have) != value:
                return f"{role}.{key}: {have!r}, the paper's {value!r}"
    return None


class OfficialLayoutError(ValueError):
    """A file that is not the authors' UCDIR weights in the expected layout."""


def _swap(rest: str, pairs: tuple[tuple[str, str], ...], forward: bool) -> str:
    for official, ours in pairs:
        a, b = (official, ours) if forward else (ours, official)
        if rest.startswith(a):
            return b + rest[len(a) :]
    return rest


def to_ours(key: str) -> str | None:
    """Our key of an official key; None for a key that has no counterpart (unknown layout)."""
    if key.startswith("denoise_fn."):
        rest = key[len("denoise_fn.") :]
        if (top := _swap(rest, _TOP, True)) != rest:
            return "denoiser." + top
        match = re.fullmatch(r"(downs|mid|ups)\.(\d+)\.(.+)", rest)
        if match is None:
            return None
        part, index, inner = match[1], int(match[2]), match[3]
        if part == "downs":
            part, index = "down", index - 1
        part = {"ups": "up"}.get(part, part)
        return f"denoiser.{part}.{index}.{_swap(inner, _BLOCK, True)}"
    if match := _PREDICTOR_CONV.fullmatch(key):
        level, k, kind = int(match[1]), int(match[2]), match[3]
        slot = 0 if k == 1 else 2
        if 1 <= level <= 5:
            return f"predictor.down.{level - 1}.{slot}.{kind}"
        if 6 <= level <= 9:
            return f"predictor.dec.{level - 6}.{slot}.{kind}"
        if level == 10 and k == 1:
            return f"predictor.out.{kind}"
        return None
    if match := _PREDICTOR_UP.fullmatch(key):
        return f"predictor.up.{int(match[1]) - 6}.{match[2]}"
    return None


def to_official(key: str) -> str:
    """The official key of one of our keys (the inverse of `to_ours`).

    Raises:
        ValueError: the key is not one of the default network's (another architecture).
    """
    if key.startswith("denoiser."):
        rest = key[len("denoiser.") :]
        if (top := _swap(rest, _TOP, False)) != rest:
            return "denoise_fn." + top
        match = re.fullmatch(r"(down|mid|up)\.(\d+)\.(.+)", rest)
        if match is not None:
            part, index, inner = match[1], int(match[2]), match[3]
            if part == "down":
                index += 1
            part = {"down": "downs", "up": "ups"}.get(part, part)
            return f"denoise_fn.{part}.{index}.{_swap(inner, _BLOCK, False)}"
    elif match := _OURS_PREDICTOR.fullmatch(key):
        part, level, slot, kind = match[1], int(match[2]), int(match[3]), match[4]
        first = 1 if part == "down" else 6
        return f"predictor.conv{level + first}_{1 if slot == 0 else 2}.{kind}"
    elif match := re.fullmatch(r"predictor\.up\.(\d+)\.(weight|bias)", key):
        return f"predictor.upv{int(match[1]) + 6}.{match[2]}"
    elif match := re.fullmatch(r"predictor\.out\.(weight|bias)", key):
        return f"predictor.conv10_1.{match[1]}"
    raise ValueError(f"{key}: no counterpart in the official layout")


def release_file(path: str | Path) -> tuple[Path, str]:
    """The weights file of a release folder (the EMA file when both are there) or `path` itself,
    with a sentence saying which was used.

    Raises:
        FileNotFoundError: nothing at `path`, or a folder without a release weights file.
        OfficialLayoutError: a folder holding only the optimizer state.
    """
    given = Path(path).expanduser()
    if given.is_file():
        return given, f"read {given.name}"
    if not given.is_dir():
        raise FileNotFoundError(f"official: {given} does not exist")
    for name in RELEASE_FILES:
        if (given / name).is_file():
            note = "the EMA weights the paper evaluates" if "ema" in name else "raw weights"
            other = [n for n in RELEASE_FILES if n != name and (given / n).is_file()]
            extra = f"; {other[0]} left aside" if other else ""
            return given / name, f"read {name} ({note}){extra}"
    if (given / OPTIMIZER_FILE).is_file():
        raise OfficialLayoutError(
            f"official: {given} holds only {OPTIMIZER_FILE} (the optimizer state); the weights are "
            f"{' or '.join(RELEASE_FILES)}"
        )
    raise FileNotFoundError(
        f"official: {given} has neither {' nor '.join(RELEASE_FILES)}; give the release folder "
        "or one .pth file"
    )


def read_release(path: Path) -> dict[str, Tensor]:
    """A release `.pth` as {key: tensor}, unpickled with `weights_only=True` (plain tensors and
    containers only: nothing is imported or run).

    Raises:
        OfficialLayoutError: too large, not a torch zip file, truncated, anything but a flat
            dict of tensors (the optimizer state says so), or tensors that are not float.
    """
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise OfficialLayoutError(
            f"official: {path} is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a UCDIR release "
            "can hold"
        )
    if not zipfile.is_zipfile(path):
        raise OfficialLayoutError(
            f"official: {path} is not a torch.save file (empty, truncated, or another format)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OfficialLayoutError(
            f"official: {path} cannot be read as plain tensors ({first[:200]}); nothing from it "
            "was executed"
        ) from None
    if isinstance(state, Mapping) and {"state", "param_groups"} <= set(state):
        raise OfficialLayoutError(
            f"official: {path} is an optimizer state (state, param_groups), not the weights; "
            f"give {' or '.join(RELEASE_FILES)}"
        )
    if not isinstance(state, Mapping) or not state:
        raise OfficialLayoutError(f"official: {path} does not hold a state dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise OfficialLayoutError(
                f"official: {path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "give a state dict (I_Elatest_gen_ema.pth)"
            )
        if not value.is_floating_point():
            raise OfficialLayoutError(f"official: {path}: {key} is {value.dtype}, not float")
    return dict(state)


def convert_state(
    state: Mapping[str, Tensor], expected: Mapping[str, torch.Size], where: str
) -> tuple[dict[str, Tensor], list[str]]:
    """Our state dict from an official one, checked exactly against `expected` (our keys and
    shapes): every official tensor used once, every parameter filled, every shape equal.

    Returns:
        (our state dict in float32, notes: a stripped ``module.`` prefix, dropped buffers).

    Raises:
        OfficialLayoutError: naming the first offending key (an unknown key, a missing one, a
            shape that differs: another architecture or width).
    """
    notes: list[str] = []
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module.") :]: v for k, v in state.items()}
        notes.append("stripped the 'module.' prefix (a DataParallel/DDP state dict)")
    buffers = [k for k in state if k in SCHEDULE_BUFFERS]
    if buffers:
        notes.append(f"dropped the {len(buffers)} noise-schedule buffers (not weights)")
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in SCHEDULE_BUFFERS:
            continue
        name = to_ours(key)
        if name is None or name not in expected:
            raise OfficialLayoutError(
                f"{where}: {key} is not a key of the authors' SID model (another architecture?)"
            )
        if tuple(value.shape) != tuple(expected[name]):
            shape = "x".join(map(str, value.shape))
            wanted = "x".join(map(str, expected[name]))
            raise OfficialLayoutError(
                f"{where}: {key} has shape {shape}, the full-size model's is {wanted} (another "
                "width or configuration?)"
            )
        ours[name] = value.to(torch.float32)
    missing = [name for name in expected if name not in ours]
    if missing:
        raise OfficialLayoutError(
            f"{where}: {to_official(missing[0])} is missing ({len(missing)} of {len(expected)} "
            "tensors are): a truncated file, or not the full model"
        )
    return ours, notes


def official_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official state dict (EMA-file layout: weights only) of our networks' state dict
    (keys ``predictor.*`` and ``denoiser.*``)."""
    return {to_official(key): value for key, value in state.items()}
