"""Bad training data found before the first step: a fast check of every training file.

A corrupt image used to stop a run at whatever step first drew it (step 8 of 19, no checkpoint
yet). `PairDataModule.setup` now checks every training file when fitting starts
(``data.check=true``, the default), without decoding any pixels:

- images: Pillow opens the file and `verify()`s its structure (a PNG's chunks and their CRCs;
  a JPEG's header only), and the size its header claims is compared with `MAX_PIXELS`;
- decoded arrays (``.npy``, the SID cache): `np.load` memory-maps the file, which reads its
  header and checks that the file holds every byte the header announces.

What it cannot see (a JPEG cut short, a PNG whose compressed data is damaged but whose chunks
are intact) fails when it is decoded; ``data.on_error=skip`` then skips that sample (see
`ucdir.data.visits`). Every bad file is listed in one `BadDataError` (``data.on_error=raise``,
the default) or dropped with a warning (``data.on_error=skip``).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ucdir.data.images import MAX_PIXELS

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
"""What a bad training file does: stop with an error naming it, or be left out (counted)."""

ON_ERROR: tuple[OnError, ...] = ("raise", "skip")

HINT = (
    "fix or remove them, or set data.on_error=skip to train without them (files that fail "
    "to decode later are then skipped too), or data.check=false to skip this check"
)


class BadFile(NamedTuple):
    """A training file that cannot be read, and why."""

    path: Path
    reason: str


class CheckResult(NamedTuple):
    """The outcome of `check_files`: the items that read a bad file, every bad file once, and
    the number of files checked."""

    bad_items: list[int]
    bad_files: list[BadFile]
    checked: int


class BadDataError(ValueError):
    """Training files that cannot be read, each named with its reason."""


def check_on_error(on_error: str) -> OnError:
    """`on_error` after checking that it is ``raise`` or ``skip``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"data.on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error  # type: ignore[return-value]


def image_problem(path: Path) -> str | None:
    """Why `path` is not a readable image, judged from its header and structure, or None."""
    try:
        with Image.open(path) as im:
            pixels = im.width * im.height
            im.verify()
    except UnidentifiedImageError:
        return "not an image (Pillow cannot identify its format)"
    except FileNotFoundError:
        return "does not exist"
    except Image.DecompressionBombError as err:
        return f"refused as a decompression bomb ({err})"
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        return f"corrupt or truncated ({err})"
    if pixels > MAX_PIXELS:
        return f"claims {pixels:,} pixels, over the limit max_pixels={MAX_PIXELS:,}"
    return None


def array_problem(path: Path) -> str | None:
    """Why `path` is not a complete ``.npy`` array file (memory-mapped, not read), or None."""
    try:
        np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return "does not exist"
    except (OSError, ValueError, EOFError) as err:
        return f"not a complete .npy array ({err})"
    return None


def file_problem(path: Path) -> str | None:
    """Why the training file `path` cannot be read (by its kind: ``.npy`` or an image), or None."""
    if path.suffix.lower() == ".npy":
        return array_problem(path)
    return image_problem(path)


def check_files(items: Sequence[Sequence[Path]], workers: int = 1) -> CheckResult:
    """Checks the files of every item (a training image, or the files of a pair) with
    `file_problem`, each file once however many items read it.

    Args:
        items: the files each training item reads.
        workers: threads that open files at once (the check waits on the disk more than on
            the CPU).
    """
    unique = list(dict.fromkeys(path for files in items for path in files))
    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = dict(zip(unique, pool.map(file_problem, unique), strict=True))
    log.info(
        "data.check: %d training files checked in %.1f s (data.check=false skips this)",
        len(unique),
        time.perf_counter() - start,
    )
    bad_files = [BadFile(path, reason) for path, reason in problems.items() if reason is not None]
    bad_items = [i for i, files in enumerate(items) if any(problems[p] for p in files)]
    return CheckResult(bad_items, bad_files, len(unique))


def describe(bad_files: Sequence[BadFile], total: int, task: str) -> str:
    """The lines naming every bad file of task `task` (of `total` training files) with its
    reason."""
    lines = [f"data.check: {len(bad_files)} of the {total} training files of task {task!r} "]
    lines[0] += "cannot be read:"
    lines += [f"  {bad.path}: {bad.reason}" for bad in bad_files]
    return "\n".join(lines)


def bad_data_error(bad_files: Sequence[BadFile], total: int, task: str) -> BadDataError:
    """The error listing every bad file, naming ``data.check=false`` and ``data.on_error=skip``."""
    return BadDataError(f"{describe(bad_files, total, task)}\n{HINT}")
