"""`python -m ucdir.weights install`: fetch and convert the metric weights (see the package doc).

Exit status 0 when everything is in place, 1 when something could not be installed (one line
per item says why; what could be installed is). `make install` ignores the status: without the
weights every other part of ucdir works and the perceptual metrics say what is missing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ucdir.weights.installer import GROUPS, SDIST_DIR_ENV, WEIGHTS_DIR_ENV, install, weights_dir

log = logging.getLogger("ucdir.weights")


def _written(paths: list[Path], dest: Path) -> str:
    """`a.safetensors (9.4 MB), calibration/ (11 files, 5.6 MB)`: sizes per top-level entry."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        parts = path.relative_to(dest).parts
        groups.setdefault(parts[0] + ("/" if len(parts) > 1 else ""), []).append(path)
    entries = []
    for name, files in groups.items():
        size = f"{sum(f.stat().st_size for f in files) / 2**20:.1f} MB"
        entries.append(
            f"{name} ({len(files)} files, {size})" if len(files) > 1 else f"{name} ({size})"
        )
    return ", ".join(entries)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ucdir.weights", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("install", help="fetch, verify, convert (writes nothing already there)")
    cmd.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"the weights folder (default ${WEIGHTS_DIR_ENV}, else $TORCH_HOME/hub/ucdir)",
    )
    cmd.add_argument(
        "--sdist-dir",
        type=Path,
        default=Path(os.environ[SDIST_DIR_ENV]) if os.environ.get(SDIST_DIR_ENV) else None,
        help=f"a folder holding the sdists already, used before pip (default ${SDIST_DIR_ENV})",
    )
    cmd.add_argument("--offline", action="store_true", help="never call pip")
    cmd.add_argument(
        "--only", choices=sorted(GROUPS), action="append", help="install only these (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    dest = args.dir.expanduser() if args.dir is not None else weights_dir()
    groups = args.only or list(GROUPS)
    items = [item for g in groups for item in GROUPS[g]]
    result = install(dest, items, sdist_dir=args.sdist_dir, offline=args.offline)
    if result.written:
        log.info("ucdir.weights: wrote to %s: %s", dest, _written(result.written, dest))
    if result.present:
        log.info("ucdir.weights: already in %s: %s", dest, ", ".join(result.present))
    by_reason: dict[str, list[str]] = {}
    for label, why in result.failed.items():
        by_reason.setdefault(why, []).append(label)
    for why, labels in by_reason.items():
        log.warning(
            "ucdir.weights: not installed: %s (%s); what needs them stays unavailable until "
            "`python -m ucdir.weights install` succeeds",
            ", ".join(labels),
            why,
        )
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
