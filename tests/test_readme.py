"""Every `python -m ucdir.…` command printed in the README runs as printed."""

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
COMMANDS = [
    line.split("#")[0].strip()
    for block in BLOCKS
    for line in block.splitlines()
    if line.strip().startswith(".venv/bin/python -m ucdir.")
]


def test_readme_has_commands() -> None:
    assert COMMANDS
    assert any("make test" in block for block in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command: str) -> None:
    argv = [sys.executable, *shlex.split(command)[1:]]
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True, timeout=600)
