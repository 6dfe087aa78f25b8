"""`Metrics`: the one scorer that validation, `ucdir.evaluate` and the scoring mode all use.

What each metric is and how it is scored comes from the table `ucdir.metrics.specs.METRICS`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from ucdir.metrics.fidelity import ColorSpace, prepare
from ucdir.metrics.specs import (
    METRICS,
    Accumulate,
    MetricSpec,
    Score,
    ScoringOptions,
    SetScorer,
)
from ucdir.metrics.weights import MetricUnavailableError

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
"""Every built-in metric, in the paper's column order, then the extra ones."""
Row = dict[str, "str | float"]


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
        metrics: names out of the table `ucdir.metrics.specs.METRICS`: `psnr`, `ssim`
            (torchmetrics), `ssim3d` (the official 3-D SSIM), `lpips` (AlexNet, the paper's),
            `niqe` (BasicSR's, the paper's), `dists`, `lpips_vgg`, `niqe_pyiqa`, `fid`, `kid` (on
            `patch_size`² patches; KID ×10³).
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
        if not names or any(m not in METRICS for m in names):
            raise ValueError(
                f"metrics must be a non-empty subset of {tuple(METRICS)}, got {names!r}"
            )
        if color not in get_args(ColorSpace):
            raise ValueError(f"color must be 'rgb' or 'y', got {color!r}")
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border!r}")
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
        self.color, self.crop_border, self.quantize = color, crop_border, quantize
        self.options = ScoringOptions(
            color=color,
            crop_border=crop_border,
            patch_size=patch_size,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            kid_seed=kid_seed,
            custom_feature=feature is not None,
        )
        self.skipped: dict[str, str] = {}
        wanted = [spec for name, spec in METRICS.items() if name in names]
        # per-image metrics: the weightless ones as they are, then the networks (in table order)
        self._scores: dict[str, Score] = {s.name: s.score for s in wanted if s.score is not None}
        self._networks: dict[str, nn.Module] = {}
        for spec in wanted:
            if not spec.per_image or spec.build is None:
                continue
            if (net := self._build([spec], spec.build)) is not None:
                self._networks[spec.name] = self._scores[spec.name] = net
        # set-level metrics: one scorer (and one feature network) per `accumulate`
        groups: dict[Accumulate, list[MetricSpec]] = {}
        for spec in wanted:
            if spec.accumulate is not None:
                groups.setdefault(spec.accumulate, []).append(spec)
        self._sets: dict[tuple[str, ...], SetScorer] = {}
        for accumulate, members in groups.items():
            group = tuple(s.name for s in members)
            build = members[0].build
            extractor = (
                feature if feature is not None or build is None else self._build(members, build)
            )
            if extractor is not None:
                self._sets[group] = accumulate(extractor, self.options, frozenset(group))
        if self.skipped and on_missing == "raise":
            raise MetricUnavailableError(
                "\n".join(f"{name}: {why}" for name, why in self.skipped.items())
            )
        for name, why in self.skipped.items():
            log.warning("metric %s is skipped: %s", name, why)
        self.specs = {s.name: s for s in wanted if s.name not in self.skipped}
        self.names = list(self.specs)
        self._rows: list[Row] = []
        self._noted: set[str] = set()

    def _build(
        self, specs: Sequence[MetricSpec], build: Callable[[], nn.Module]
    ) -> nn.Module | None:
        """`build()`, or None with the reason under `skipped` for every metric of `specs`."""
        try:
            return build()
        except MetricUnavailableError as err:
            why = str(err)
        except ModuleNotFoundError as err:
            why = f"needs {', '.join(specs[0].needs) or 'a package'}: {err}"
        self.skipped.update(dict.fromkeys((s.name for s in specs), why))
        return None

    def spawn(self) -> Metrics:
        """A scorer with the same options and the same metric networks (shared, not rebuilt, so
        nothing is looked up or warned about again) that has seen no image yet: e.g. one for the
        restorations and one for x_init."""
        other = copy.copy(self)
        other._rows, other._noted = [], set()
        other._sets = {group: scorer.spawn() for group, scorer in self._sets.items()}
        return other

    def to(self, device: torch.device | str) -> Metrics:
        """Moves the metric networks (and FID/KID states) to `device`; returns self."""
        for net in self._networks.values():
            net.to(device)
        for scorer in self._sets.values():
            scorer.to(device)
        return self

    def reset(self) -> None:
        """Forgets every image seen so far."""
        self._rows = []
        for scorer in self._sets.values():
            scorer.reset()

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
        values: dict[str, Tensor | Sequence[float]] = {}
        view: tuple[Tensor, ...] | None = None  # the colour space and crop of fidelity metrics
        for name, score in self._scores.items():
            spec = self.specs[name]
            if min(restored.shape[-2:]) < spec.min_side:  # reported as too small
                values[name] = [math.nan] * b
                continue
            pair: tuple[Tensor, ...] = (restored, gt)
            if spec.fidelity:
                if view is None:
                    view = tuple(prepare(x, self.color, self.crop_border) for x in pair)
                pair = view
            values[name] = score(*pair) if spec.reference else score(pair[0])
        for scorer in self._sets.values():
            scorer.update(restored, gt)
        for i, name in enumerate(names):
            row: Row = {"name": name}
            row.update({m: float(values[m][i]) for m in self.names if m in values})
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
        for m in (name for name, spec in self.specs.items() if spec.per_image):
            values = [float(r[m]) for r in rows]
            if unscored := sum(math.isnan(v) for v in values):
                # a mean over some of the images would not compare with other runs: leave it out
                skipped[m] = (
                    f"{unscored} of {len(rows)} images are too small to score "
                    f"({self.specs[m].requirement()})"
                )
                continue
            aggregate[m] = sum(values) / len(values)
            if (counts := self.specs[m].counts) is not None:
                aggregate.update(counts(values))
        for group, scorer in self._sets.items():
            try:
                aggregate.update(scorer.compute())
            except ValueError as err:
                skipped.update(dict.fromkeys(group, str(err)))
        for name in sorted(skipped.keys() - self.skipped.keys() - self._noted):
            log.warning("metric %s is not reported: %s", name, skipped[name])
            self._noted.add(name)  # once per scorer, not at every validation
        return MetricsResult(aggregate, rows, skipped)

    def protocol(self) -> dict[str, object]:
        """How every computed metric was obtained, for the results files."""
        packages = ("torch", "torchmetrics", "lpips", "pyiqa", "torch-fidelity", "ucdir")
        return {
            "quantize": "8-bit (round(x*255)/255) before every metric" if self.quantize else "none",
            "official_jpeg_q100": "not replicated: the official code re-saved every image as "
            "JPEG quality 100 before scoring; ucdir scores the images as given",
            "metrics": {m: spec.describe(self.options) for m, spec in self.specs.items()},
            "skipped": dict(self.skipped),
            "versions": {p: _version(p) for p in packages},
        }
