"""Inference: `restore()` (the only path from lq to restored) and the `python -m ucdir.restore`
command that applies a trained checkpoint to images of any size."""

from ucdir.restore.core import Restoration, SamplerLike, restore

__all__ = ["Restoration", "SamplerLike", "restore"]
