"""Entry point of `python -m ucdir.app [pretrained=<dir|name>] [server.port=7860]` (`make app`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from ucdir.config_files import CONFIG_DIR
from ucdir.overrides import run_command

if TYPE_CHECKING:
    from ucdir.app.layout import Settings

log = logging.getLogger(__name__)

# gradio reads these when imported: no usage statistics or version check, no share tunnel
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SHARE": "False"}


def settings(cfg: DictConfig) -> Settings:
    """The page's initial choices and the server's limits from `cfg` (configs/app.yaml).

    Raises:
        ModuleNotFoundError: gradio is not installed (`pip install "ucdir[app]"`).
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from ucdir.app.layout import Settings
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the web app needs gradio ({err}): pip install 'ucdir[app]'", name=err.name
        ) from err
    from ucdir.app.engine import Choices

    ui = cfg.restore
    if int(cfg.max_pixels) < 1:
        raise ValueError(f"max_pixels must be positive, got {cfg.max_pixels!r}")
    return Settings(
        choices=Choices(
            pretrained=str(cfg.pretrained),
            sampler=str(ui.sampler),
            steps=int(ui.steps),
            seed=int(ui.seed),
            guidance=float(ui.guidance),
            num_samples=int(ui.num_samples),
            patch=ui.patch,
            tile=int(ui.tile),
        ),
        results=Path(str(cfg.results)),
        max_pixels=int(cfg.max_pixels),
        device=str(cfg.device),
    )


def serve(cfg: DictConfig) -> None:
    """Builds the page from `cfg` and serves it on `server.name`:`server.port` until stopped."""
    from ucdir.app.layout import build_app

    chosen = settings(cfg)
    chosen.results.mkdir(parents=True, exist_ok=True)
    app = build_app(chosen)
    app.queue(max_size=int(cfg.server.queue_size))
    log.info("results are written to %s", chosen.results)
    app.launch(
        server_name=str(cfg.server.name),
        server_port=int(cfg.server.port),
        share=False,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        inbrowser=False,
        show_error=True,
        max_file_size=str(cfg.server.max_file_size),
        allowed_paths=[str(chosen.results)],
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="app")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    run_command(main)
