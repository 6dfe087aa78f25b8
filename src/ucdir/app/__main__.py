"""Entry point of `python -m ucdir.app [pretrained=<dir|name>] [server.port=7860]` (`make app`).

The page serves what its operator chose: the models of `ModelAllowList`, and, on an address other
machines reach, only visitors who sign in (`UCDIR_APP_AUTH=user:password`) unless the operator
says `server.insecure=true`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from ucdir.config_files import CONFIG_DIR
from ucdir.overrides import reports_user_errors, run_command

if TYPE_CHECKING:
    from ucdir.app.layout import Settings

log = logging.getLogger(__name__)

# gradio reads these when imported: no usage statistics or version check, no share tunnel
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SHARE": "False"}
# `user:password` visitors sign in with; not a config key, whose value the run folder's .hydra/
# would keep
AUTH_ENV = "UCDIR_APP_AUTH"


class ServerConfigError(ValueError):
    """A setting the app refuses to start with; `python -m ucdir.app` says it in one line (a
    `ValueError`: `reports_user_errors`)."""


def is_loopback(host: str) -> bool:
    """Whether `host` (`server.name`) serves this machine only: localhost, 127.x.x.x or ::1."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def sign_in(server: DictConfig, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The (user, password) visitors sign in with, from `UCDIR_APP_AUTH=user:password`; None for
    a page without sign-in, which only a loopback `server.name` or `server.insecure=true` gets.

    Args:
        server: the `server` node of configs/app.yaml (`name`, `insecure`).
        environ: the environment (default: `os.environ`).

    Raises:
        ServerConfigError: the variable is not `user:password`, or `server.name` is reached from
            other machines and neither the variable nor `server.insecure=true` is set.
    """
    value = (os.environ if environ is None else environ).get(AUTH_ENV, "")
    auth = None
    if value:
        user, _, password = value.partition(":")
        if not (user and password):  # the value itself is never repeated: it holds the password
            raise ServerConfigError(f"{AUTH_ENV} must be user:password, both non-empty")
        auth = (user, password)
    name = str(server.name)
    if auth is not None:
        log.info("visitors sign in with the user and password of %s", AUTH_ENV)
    elif not is_loopback(name):
        if not server.insecure:
            raise ServerConfigError(
                f"server.name={name} serves other machines: set {AUTH_ENV}=user:password in the "
                "environment for a sign-in, or server.insecure=true to serve without one"
            )
        log.warning(
            "server.insecure=true: server.name=%s serves every machine that reaches it WITHOUT "
            "sign-in; anyone there can run restorations and download the results",
            name,
        )
    return auth


def settings(cfg: DictConfig) -> Settings:
    """The page's initial choices and the server's limits from `cfg` (configs/app.yaml).

    Raises:
        ModuleNotFoundError: gradio is not installed (`pip install "ucdir[app]"`).
        ValueError: `max_pixels` below 1, or a `models_dir` that is no folder or lies inside
            the uploads or the results.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from ucdir.app.layout import Settings
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the web app needs gradio ({err}): pip install 'ucdir[app]'", name=err.name
        ) from err
    from ucdir.app.engine import Choices, ModelAllowList

    ui = cfg.restore
    if int(cfg.max_pixels) < 1:
        raise ValueError(f"max_pixels must be positive, got {cfg.max_pixels!r}")
    results = Path(str(cfg.results))
    models = ModelAllowList.of(
        str(cfg.pretrained),
        None if cfg.models_dir is None else str(cfg.models_dir),
        allow_any=bool(cfg.allow_any_model),
        results=results,
    )
    if models.allow_any:
        log.warning(
            "allow_any_model=true: visitors may load any folder on this server or any hub id "
            "(uploads and results excepted)"
        )
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
        results=results,
        max_pixels=int(cfg.max_pixels),
        models=models,
        device=str(cfg.device),
        precision=str(cfg.get("precision", "auto")),
    )


def serve(cfg: DictConfig) -> None:
    """Builds the page from `cfg` and serves it on `server.name`:`server.port` until stopped.

    Raises:
        ServerConfigError: see `sign_in`; checked before anything else.
        ValueError: see `settings`.
    """
    auth = sign_in(cfg.server)
    from ucdir.app.layout import build_app

    chosen = settings(cfg)
    chosen.results.mkdir(parents=True, exist_ok=True)
    app = build_app(chosen)
    app.queue(max_size=int(cfg.server.queue_size))
    log.info("results are written to %s", chosen.results)
    app.launch(
        server_name=str(cfg.server.name),
        server_port=int(cfg.server.port),
        auth=auth,
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
@reports_user_errors
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    run_command(main)
