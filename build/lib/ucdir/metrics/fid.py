"""FID and KID between non-overlapping patches of restored and ground-truth images.

The paper's protocol (official `eval1.py`): every image is cropped to its top-left
⌊H/256⌋·256 × ⌊W/256⌋·256 region and cut into non-overlapping 256×256 patches (a 1280×720 GoPro
frame gives 5×2 = 10, a 2120×1416 SID image 8×5 = 40); FID and KID compare the patch sets of the
restored and the ground-truth images. The distances are torchmetrics' `FrechetInceptionDistance`
and `KernelInceptionDistance` with an injected feature extractor (the FID Inception for the
paper's numbers, any small module in tests), run once per patch: FID and KID receive the
features through an identity "extractor". KID is reported ×10³, as the paper prints it.

Under DDP the torchmetrics states are gathered over all processes at `compute`, and KID puts the
gathered features in a canonical order before drawing its subsets, so N processes give the values
of one process that saw every patch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities.data import dim_zero_cat

KID_SCALE = 1000.0


def extract_patches(images: Tensor, size: int = 256) -> Tensor:
    """Non-overlapping size×size patches of the top-left ⌊H/size⌋·size × ⌊W/size⌋·size crop.

    Args:
        images: (B, C, H, W).
        size: patch side in px.

    Returns:
        (B·⌊H/size⌋·⌊W/size⌋, C, size, size), row-major per image; empty when H or W < size.
    """
    b, c, h, w = images.shape
    n_h, n_w = h // size, w // size
    x = images[..., : n_h * size, : n_w * size]
    x = x.reshape(b, c, n_h, size, n_w, size).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * n_h * n_w, c, size, size)


class _Precomputed(nn.Module):
    """Identity feature extractor: FID and KID receive features computed once by the caller."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _canonical_order(features: Tensor) -> Tensor:
    """A permutation that depends only on the set of feature rows, not on their arrival order
    (rows sorted by a fixed projection; only identical rows tie, and their order is moot)."""
    weights = torch.linspace(1.0, 2.0, features.shape[1], dtype=torch.float64)
    return torch.argsort(features.double() @ weights.to(features.device), stable=True)


class _OrderFreeKID(KernelInceptionDistance):
    """torchmetrics' KID made exact under DDP.

    - Before a sync, each process packs its feature lists into one tensor each (an empty one if it
      saw no patch): torchmetrics gathers list states element by element, so processes holding
      different numbers of update chunks would otherwise wait on each other forever.
    - The gathered features are put in a canonical order before the subset draws, so the result
      does not depend on how the patches were split over processes.
    """

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_features = num_features

    def sync(self, *args: Any, **kwargs: Any) -> None:
        for name in ("real_features", "fake_features"):
            parts = getattr(self, name)
            empty = torch.empty(0, self.num_features, device=self.device)
            setattr(self, name, [dim_zero_cat(parts) if parts else empty])
        super().sync(*args, **kwargs)

    def compute(self) -> tuple[Tensor, Tensor]:
        for name in ("real_features", "fake_features"):
            features = dim_zero_cat(getattr(self, name))
            setattr(self, name, [features[_canonical_order(features)]])
        return super().compute()


def _sum_over_processes(values: list[int], device: torch.device) -> list[int]:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return values
    total = torch.tensor(values, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def _num_features(feature: nn.Module, patch_size: int) -> int:
    n = getattr(feature, "num_features", None)
    if isinstance(n, int):
        return n
    with torch.no_grad():
        return int(feature(torch.rand(1, 3, patch_size, patch_size)).shape[-1])


class PatchDistances:
    """Accumulates patch features of restored and ground-truth images; computes FID and KID.

    Args:
        feature: module mapping (N, 3, H, W) images in [0, 1] to (N, F) features; shared by FID and
            KID (the FID Inception for the paper's protocol).
        fid: compute FID.
        kid: compute KID.
        patch_size: patch side in px.
        kid_subsets: number of random subsets KID averages over.
        kid_subset_size: subset size; clamped to the number of patches (as clean-fid does).
        seed: seed of KID's subset draws, so that a result is reproducible.
        chunk: patches per forward of the feature extractor.
    """

    def __init__(
        self,
        feature: nn.Module,
        *,
        fid: bool = True,
        kid: bool = True,
        patch_size: int = 256,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int = 0,
        chunk: int = 64,
    ) -> None:
        if patch_size < 1 or chunk < 1:
            raise ValueError(f"patch_size and chunk must be positive, got {patch_size}, {chunk}")
        self.patch_size, self.kid_subset_size, self.seed, self.chunk = (
            patch_size,
            kid_subset_size,
            seed,
            chunk,
        )
        self.feature = feature.eval()
        identity = _Precomputed(_num_features(feature, patch_size))
        self.fid = FrechetInceptionDistance(feature=identity, normalize=True) if fid else None
        self.kid = None
        if kid:
            with warnings.catch_warnings():
                # Keeping every feature is what KID needs (2048 floats per patch); not news.
                warnings.filterwarnings("ignore", message=".*save all extracted features")
                self.kid = _OrderFreeKID(
                    identity.num_features,
                    feature=identity,
                    normalize=True,
                    subsets=kid_subsets,
                    subset_size=kid_subset_size,
                )
        self.n_restored = 0
        self.n_gt = 0
        self.device = torch.device("cpu")
        self._options = {
            "fid": fid,
            "kid": kid,
            "patch_size": patch_size,
            "kid_subsets": kid_subsets,
            "kid_subset_size": kid_subset_size,
            "seed": seed,
            "chunk": chunk,
        }

    def spawn(self) -> PatchDistances:
        """Empty distances with the same options and the same feature extractor (not copied)."""
        return PatchDistances(self.feature, **self._options).to(self.device)  # type: ignore[arg-type]

    def _metrics(self) -> list[FrechetInceptionDistance | KernelInceptionDistance]:
        return [m for m in (self.fid, self.kid) if m is not None]

    def to(self, device: torch.device | str) -> PatchDistances:
        """Moves the feature extractor and the accumulated states to `device`."""
        self.feature.to(device)
        self.device = torch.device(device)
        for m in self._metrics():
            m.to(device)
        return self

    def reset(self) -> None:
        """Forgets every accumulated patch."""
        for m in self._metrics():
            m.reset()
        self.n_restored = self.n_gt = 0

    @torch.no_grad()
    def update(self, restored: Tensor, gt: Tensor) -> None:
        """Adds the patches of restored and ground-truth batches, (B, 3, H, W) in [0, 1]."""
        for images, real in ((restored, False), (gt, True)):
            patches = extract_patches(images, self.patch_size)
            for part in patches.split(self.chunk) if patches.shape[0] else ():
                features = self.feature(part)
                for m in self._metrics():
                    m.update(features, real=real)
            if real:
                self.n_gt += patches.shape[0]
            else:
                self.n_restored += patches.shape[0]

    def compute(self) -> dict[str, float]:
        """FID, KID ×10³ (mean and std over subsets) and the patch count of each set, over every
        process under DDP (call it on all of them).

        Raises:
            ValueError: with fewer than two patches in a set (a small image gives none); raised
                on every process alike.
        """
        n_restored, n_gt = _sum_over_processes([self.n_restored, self.n_gt], self.device)
        n = min(n_restored, n_gt)
        if n < 2:
            raise ValueError(
                f"FID/KID need at least 2 patches of {self.patch_size}² in each set, got "
                f"{n_restored} restored and {n_gt} ground-truth patches "
                f"(an image smaller than {self.patch_size} px gives none)"
            )
        out: dict[str, float] = {"patches": float(n)}
        if self.fid is not None:
            out["fid"] = float(self.fid.compute())
        if self.kid is not None:
            self.kid.subset_size = min(self.kid_subset_size, n)
            # torchmetrics draws KID's subsets from the global RNG; fork it so that the result is
            # reproducible and the caller's random state is left untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                mean, std = self.kid.compute()
            out["kid"] = float(mean) * KID_SCALE
            out["kid_std"] = float(std) * KID_SCALE
        return out
