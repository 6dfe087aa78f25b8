"""NIQE as the paper reports it: BasicSR's algorithm with the MATLAB pristine model.

Mittal, Soundararajan and Bovik, "Making a completely blind image quality analyzer" (IEEE SPL
2013), in the variant BasicSR ships and the UCDIR authors evaluate with:

1. MATLAB-style BT.601 luma of the RGB image, `Y = 16 + 65.481 R + 128.553 G + 24.966 B` with R, G,
   B in [0, 1] (Y in [16, 235], not rounded).
2. Crop to a whole number of 96×96 blocks (top-left).
3. At two scales (the second a 2×2 average of the first, which is what OpenCV's `INTER_LINEAR`
   half-size resize computes on an even-sized image): local mean and deviation with the 7×7
   Gaussian window of the pristine model (edges replicated), MSCN coefficients
   `(Y − μ) / (σ + 1)`, and per block 18 features: the generalised-Gaussian shape and mean
   scale of the MSCN values, and for the four neighbour products (right, down, and the two
   diagonals, taken with circular shifts inside the block) the asymmetric-GGD shape, mean and the
   left/right scales. Shapes come from a grid search over 0.2…10 in steps of 0.001.
4. Fit a Gaussian to the 36-dimensional block features (NaN rows ignored) and return the
   Mahalanobis-like distance to the pristine model (paper Eq. 10), with the pseudo-inverse of the
   mean of the two covariances.

The pristine model (`assets/niqe/niqe_pris_params.npz`, BasicSR's file, Apache-2.0) ships with the
package, so NIQE needs no download. As in the UCDIR evaluation code, an image smaller than 96 px
uses blocks of its shorter side (rounded down to an even size so that the half scale stays exact).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from scipy.special import gamma as gamma_fn
from torch import Tensor

BLOCK_SIZE = 96
PRISTINE_PARAMS = "assets/niqe/niqe_pris_params.npz"
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


class PristineModel(NamedTuple):
    """The multivariate Gaussian of pristine-image features and the local-statistics window.

    Attributes:
        mu: (36,) mean feature vector.
        cov: (36, 36) feature covariance.
        window: (7, 7) Gaussian window for the local mean and deviation.
    """

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray


@functools.cache
def pristine_model() -> PristineModel:
    """The pristine model shipped with the package (BasicSR's `niqe_pris_params.npz`)."""
    with resources.as_file(resources.files("ucdir") / PRISTINE_PARAMS) as path, np.load(path) as f:
        return PristineModel(
            mu=f["mu_pris_param"].reshape(-1).astype(np.float64),
            cov=f["cov_pris_param"].astype(np.float64),
            window=f["gaussian_window"].astype(np.float64),
        )


@functools.cache
def _shape_grid() -> tuple[np.ndarray, np.ndarray]:
    """Candidate GGD shapes and their ratio E[|x|]² / E[x²] = Γ(2/a)² / (Γ(1/a) Γ(3/a))."""
    shapes = np.arange(0.2, 10.001, 0.001)
    ratios = gamma_fn(2 / shapes) ** 2 / (gamma_fn(1 / shapes) * gamma_fn(3 / shapes))
    return shapes, ratios


def _aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised-Gaussian fit of each row by moment matching.

    Args:
        x: (n_blocks, n_values) samples, one block per row.

    Returns:
        shape, left scale and right scale, each (n_blocks,); NaN where a side has no samples.
    """
    neg, pos = x < 0, x > 0
    sq = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right_std = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        g = left_std / right_std
        r = np.abs(x).mean(1) ** 2 / sq.mean(1)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    shapes, ratios = _shape_grid()
    # NaN rows give an all-NaN distance row; argmin then picks index 0, and the scales stay NaN.
    shape = shapes[np.argmin((ratios[None, :] - r_norm[:, None]) ** 2, axis=1)]
    factor = np.sqrt(gamma_fn(1 / shape) / gamma_fn(3 / shape))
    return shape, left_std * factor, right_std * factor


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """(n_blocks, b, b) MSCN blocks -> (n_blocks, 18) features of one scale."""
    n = blocks.shape[0]
    shape, left, right = _aggd_fit(blocks.reshape(n, -1).astype(np.float64))
    feats = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        prod = blocks * np.roll(blocks, shift, axis=(1, 2))
        shape, left, right = _aggd_fit(prod.reshape(n, -1).astype(np.float64))
        mean = (right - left) * gamma_fn(2 / shape) / gamma_fn(1 / shape)
        feats += [shape, mean, left, right]
    return np.stack(feats, axis=1)


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (paper Eq. 1, C = 1), in y's dtype."""
    mu = ndimage.convolve(y, window, mode="nearest")
    var = ndimage.convolve(y * y, window, mode="nearest") - mu * mu
    return (y - mu) / (np.sqrt(np.abs(var)) + 1)


def _half(y: np.ndarray) -> np.ndarray:
    """Half-size image as OpenCV's INTER_LINEAR resize of Y/255 computes it (even sides).

    At an exact factor 1/2 the bilinear taps are 1/2, 1/2: rows are averaged first, then columns,
    each rounded in y's dtype; the /255 and ×255 around it are kept for the same rounding.
    """
    x = y / 255.0
    rows = (x[:, 0::2] + x[:, 1::2]) * 0.5
    return ((rows[0::2] + rows[1::2]) * 0.5) * 255.0


def _blocks(img: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size×size blocks of an image whose sides are multiples of size."""
    h, w = img.shape
    return img.reshape(h // size, size, w // size, size).swapaxes(1, 2).reshape(-1, size, size)


def niqe_luma(y: np.ndarray, model: PristineModel | None = None) -> float:
    """NIQE of a luma image (lower is better).

    Args:
        y: (H, W) luma in [16, 235] (8-bit scale), any float dtype.
        model: the pristine model; the packaged one when None.

    Returns:
        The NIQE score.

    Raises:
        ValueError: if the image gives fewer than two blocks (NIQE's covariance needs two).
    """
    model = model or pristine_model()
    h, w = y.shape
    block = BLOCK_SIZE if min(h, w) >= BLOCK_SIZE else min(h, w) // 2 * 2
    n_h, n_w = (h // block, w // block) if block else (0, 0)
    if n_h * n_w < 2:
        raise ValueError(
            f"NIQE needs at least two {BLOCK_SIZE}×{BLOCK_SIZE} blocks (or two square blocks of "
            f"the shorter side of a smaller image), got an image of {h}×{w}"
        )
    # float32 as in the reference: flat (e.g. JPEG) regions then give exact zeros in the MSCN
    # map, which the AGGD fit leaves out of both sides; float64 would give tiny signed residues.
    img = np.asarray(y, dtype=np.float32)[: n_h * block, : n_w * block]
    features = []
    for scale in (1, 2):
        mscn = _mscn(img, model.window)
        features.append(_block_features(_blocks(mscn, block // scale)))
        if scale == 1:
            img = _half(img)
    feats = np.concatenate(features, axis=1)
    mu = np.nanmean(feats, axis=0)
    cov = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    diff = model.mu - mu
    return float(np.sqrt(diff @ np.linalg.pinv((model.cov + cov) / 2) @ diff))


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """MATLAB-style BT.601 luma: (..., 3) RGB in [0, 1] -> (...) float32 Y in [16, 235].

    Computed in float64 and rounded to float32 on the [0, 1] scale, as the reference does.
    """
    y = 16.0 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966])
    return (y / 255.0).astype(np.float32) * np.float32(255.0)


def niqe(image: Tensor) -> float:
    """NIQE of one RGB image under the paper's protocol (lower is better).

    Args:
        image: (3, H, W) RGB in [0, 1].

    Returns:
        The NIQE score of the image's BT.601 luma.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"niqe expects one (3, H, W) RGB image, got shape {tuple(image.shape)}")
    rgb = image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
    return niqe_luma(rgb_to_luma(rgb))
