"""Entry point of `python -m ucdir.restore`."""

import hydra
from omegaconf import DictConfig

from ucdir.config_files import CONFIG_DIR
from ucdir.restore.cli import run


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="restore")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
