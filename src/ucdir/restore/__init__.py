"""Inference: `restore()` (the only path from lq to restored) and the `python -m ucdir.restore`
command that applies a trained checkpoint to images of any size."""

from ucdir.diffusion.sampling import SamplerLike
from ucdir.restore.core import Restoration, restore

__all__ = ["Restoration", "SamplerLike", "restore"]
