"""The package's entry points run as a user runs them, one way for every test:
``python -m <module> <args…>`` in a fresh process.

`run_module` runs one to completion and returns its `CompletedProcess` (text; stdout and stderr
captured); `start_module` starts one (a `Popen`) for the tests that signal, kill or serve. Both
run from the repository root unless `cwd` says otherwise, with this process's environment plus
`env` (a value of None removes the variable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

Env = Mapping[str, str | None]


def environment(env: Env | None = None) -> dict[str, str]:
    """This process's environment with `env` applied (None removes a variable)."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def run_module(
    module: str,
    *args: str,
    cwd: Path = REPO,
    env: Env | None = None,
    timeout: float = 900,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>``, waited for; with `check`, a non-zero exit fails the test
    showing the end of stderr."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def start_module(
    module: str, *args: str, cwd: Path = REPO, env: Env | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """``python -m <module> <args>`` started (text mode; `popen` passes pipes, ...)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=cwd, env=environment(env), text=True, **popen
    )
