"""Offline lookup of the pretrained weights some metrics need, and the error when one is missing.

Nothing here downloads. A weights file is looked up, in order, in the folder named by the
`UCDIR_WEIGHTS_DIR` environment variable (when set) and in the file's standard cache, the one
its own library would download it to (torch hub's `checkpoints/`, pyiqa's `pyiqa/`, both under
`torch.hub.get_dir()`, i.e. `$TORCH_HOME/hub`, by default `~/.cache/torch/hub`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

WEIGHTS_DIR_ENV = "UCDIR_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained-weights file a metric reads.

    Attributes:
        name: the file name, as in the standard cache.
        url: where it can be downloaded from (by hand: nothing here downloads).
        cache_subdir: its folder under `torch.hub.get_dir()`.
        checksum: what is known of its checksum, e.g. "sha256 begins with 7be5be79".
        used_by: the metrics that need it.
    """

    name: str
    url: str
    cache_subdir: str
    checksum: str
    used_by: str

    def cache_dir(self) -> Path:
        """The standard cache folder of this file (where its own library would download it)."""
        return Path(torch.hub.get_dir()) / self.cache_subdir


ALEXNET = WeightsFile(
    name="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    cache_subdir="checkpoints",
    checksum="sha256 begins with 7be5be79",
    used_by="lpips (torchvision AlexNet backbone; the linear layers ship inside the lpips package)",
)
INCEPTION = WeightsFile(
    name="weights-inception-2015-12-05-6726825d.pth",
    url=(
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth"
    ),
    cache_subdir="checkpoints",
    checksum="sha256 begins with 6726825d",
    used_by="fid, kid (torch-fidelity's InceptionV3 port of the TF FID network)",
)
PYIQA_NIQE = WeightsFile(
    name="niqe_modelparameters.mat",
    url="https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/niqe_modelparameters.mat",
    cache_subdir="pyiqa",
    checksum="no checksum published",
    used_by="niqe_pyiqa (pyiqa's NIQE pristine model)",
)


class MetricUnavailableError(RuntimeError):
    """A requested metric cannot be computed offline (a weights file or a package is missing)."""


class MissingWeightsError(MetricUnavailableError):
    """A weights file is in none of the folders it is looked up in."""

    def __init__(self, file: WeightsFile, searched: list[Path]) -> None:
        self.file = file
        self.searched = searched
        target = os.environ.get(WEIGHTS_DIR_ENV) or str(file.cache_dir())
        super().__init__(
            f"missing weights file {file.name!r} needed by {file.used_by}. "
            f"Looked in: {', '.join(str(p) for p in searched)}. "
            f"Download it from {file.url} ({file.checksum}) and put it at "
            f"{Path(target) / file.name} (or set {WEIGHTS_DIR_ENV} to a folder holding it). "
            "Nothing is downloaded automatically."
        )


class CorruptWeightsError(RuntimeError):
    """A weights file is there but cannot be read (truncated download, wrong file): an error, not
    a skipped metric, because the user put it there and expects it to be used."""

    def __init__(self, path: Path, file: WeightsFile, cause: BaseException) -> None:
        self.path = path
        super().__init__(
            f"cannot read weights file {path} ({type(cause).__name__}: {str(cause)[:200]}); it is "
            f"truncated or not {file.name}. Delete it and download it again from {file.url} "
            f"({file.checksum})."
        )


def search_dirs(file: WeightsFile) -> list[Path]:
    """The folders `file` is looked up in, in order."""
    dirs = []
    if env := os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(env).expanduser())
    dirs.append(file.cache_dir())
    return dirs


def find_weights(file: WeightsFile) -> Path:
    """The local path of a weights file.

    Raises:
        MissingWeightsError: naming the file, its source, checksum and where to put it.
    """
    dirs = search_dirs(file)
    for folder in dirs:
        if (folder / file.name).is_file():
            return folder / file.name
    raise MissingWeightsError(file, dirs)
