"""Files written atomically: the content goes to a hidden temporary file beside the target, which
is renamed over the target only once it is complete.

A reader never sees a half-written file. The temporary file is ``.<name>.partial-<random>``: hidden,
so every listing of this package (`ucdir.data.images.list_images`, the pairing of
``ucdir.evaluate``) skips it, and removed when the write fails or is interrupted by an exception
(Ctrl-C, or SIGTERM in the commands that turn it into one). Only a hard kill (SIGKILL, power loss)
can leave one behind; `partial_files` finds those.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial-"
"""Infix of the temporary files: ``.<name>.partial-<random>`` beside ``<name>``."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the content of `path` to; renamed over `path` when the block
    ends without an exception, removed otherwise.

    The temporary file exists (empty) when the block starts, in the folder of `path` (so the
    rename never crosses filesystems), with the permissions a new file gets under the umask.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Writes `data` to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes `text` (UTF-8, newlines as given) to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def partial_files(path: str | Path) -> list[Path]:
    """The temporary files of `path` that killed writers left beside it."""
    target = Path(path)
    return sorted(target.parent.glob(f".{target.name}{PARTIAL}*"))
