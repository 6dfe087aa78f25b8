"""Where the Hydra configs are: `configs/` at the top of a source checkout (what users edit; an
editable install reads it there), or `ucdir/configs` inside an installed wheel (the build copies
the same files there, see `setup.py`). One copy in the repository, found in either place."""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "configs"
_CHECKOUT = Path(__file__).resolve().parents[2] / "configs"


def config_dir() -> Path:
    """The configs folder of this installation.

    Raises:
        FileNotFoundError: if neither the packaged nor the checkout folder holds `train.yaml`.
    """
    for folder in (_PACKAGED, _CHECKOUT):
        if (folder / "train.yaml").is_file():
            return folder
    raise FileNotFoundError(
        f"ucdir's configs are missing: neither {_PACKAGED} (installed package) nor {_CHECKOUT} "
        "(source checkout) holds train.yaml; reinstall ucdir"
    )


CONFIG_DIR = str(config_dir())
"""Absolute path of the configs folder (for `hydra.main(config_path=...)`)."""
