"""Entry point of `python -m ucdir.restore`."""

import signal
from types import FrameType

import hydra
from omegaconf import DictConfig

from ucdir.config_files import CONFIG_DIR
from ucdir.overrides import reports_user_errors, run_command
from ucdir.restore.cli import run


def _terminated(signum: int, frame: FrameType | None) -> None:
    # `kill` ends the run like Ctrl-C does: the file being written is removed, none is half-written
    raise SystemExit(128 + signum)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="restore")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    run(cfg)


if __name__ == "__main__":
    run_command(main)
