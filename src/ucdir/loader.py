"""The one loader: a trained model from anywhere becomes one handle, `ucdir.hub.UCDIR` (both
networks, the model's own sampler, its task facts, its weights file and their hash).

    model = load_model(pretrained="jpeg-cpu")                      # shipped name
    model = load_model(pretrained="outputs/export/jpeg")           # exported folder
    model = load_model(pretrained="user/ucdir-jpeg")               # hub id
    model = load_model(ckpt_path="<run>/checkpoints/last.ckpt")    # training checkpoint (EMA)

Every entry point (restore, evaluate, the app, the demo, train's `pretrained=`, export, the
distillation's teacher) calls it once; the files are read as data (`ucdir.from_file`,
`ucdir.hub.load_weights`, `ucdir.checkpoints.read_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

from ucdir.checkpoints import check_checkpoint_file
from ucdir.hub import UCDIR, resolve_pretrained

__all__ = ["check_model_source", "load_model"]


def check_model_source(ckpt_path: str | Path | None, pretrained: str | Path | None) -> None:
    """Cheap checks of `ckpt_path=` / `pretrained=` (exactly one; the file or folder exists)
    without reading the weights, so that nothing is created for a run that cannot start.

    Raises:
        ValueError: none or both given.
        FileNotFoundError: the checkpoint, folder or shipped name does not exist.
    """
    if (ckpt_path is None) == (pretrained is None):
        raise ValueError(
            "give exactly one of pretrained=<exported folder | shipped model | hub id> and "
            "ckpt_path=<training checkpoint>"
        )
    if ckpt_path is not None:
        check_checkpoint_file(ckpt_path)
    else:
        resolve_pretrained(str(pretrained))


def load_model(ckpt_path: str | Path | None = None, pretrained: str | Path | None = None) -> UCDIR:
    """The model of `pretrained=` (an exported folder, a shipped model or a hub id) or of
    `ckpt_path=` (a training checkpoint: its EMA weights), exactly one of them, in eval mode on
    the CPU.

    Raises:
        ValueError: none or both given; a refused file (`UCDIR.load`, `UCDIR.from_checkpoint`).
        FileNotFoundError: nothing of that name (`PretrainedNotFoundError` for `pretrained=`).
    """
    check_model_source(ckpt_path, pretrained)
    if ckpt_path is not None:
        return UCDIR.from_checkpoint(ckpt_path)
    return UCDIR.load(str(pretrained))
