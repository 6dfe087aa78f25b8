"""Build hook: the wheel carries the top-level `configs/` as `ucdir/configs` (one copy in the
repository; `ucdir.config_files` finds either). Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildPyWithConfigs(build_py):
    """`build_py`, then the Hydra configs copied into the built package (machine-local
    `configs/local/` left out)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "ucdir" / "configs"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(CONFIGS, target, ignore=shutil.ignore_patterns("local", "__pycache__"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
