"""The web page: gradio Blocks around `ucdir.app.engine`, one restoration at a time."""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from ucdir.app.engine import (
    PATCHES,
    Choices,
    InputError,
    ModelAllowList,
    Result,
    restore_upload,
    samplers,
)
from ucdir.app.progress import CancelRequestedError

log = logging.getLogger(__name__)

UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm"]
EMPTY_STATUS = "Upload one or several photos (PNG, JPEG, TIFF; 8 or 16 bit; grey or RGBA too)."


@dataclass(frozen=True)
class Settings:
    """What the page starts with and the server's limits (from configs/app.yaml).

    Args:
        choices: the initial model and settings.
        results: folder for the written PNGs and sidecars (one sub-folder per request).
        max_pixels: larger uploads are refused from their header.
        models: the models visitors may choose; every request is checked against it.
        device: `auto`, `cpu`, `cuda`, ...
        precision: `auto`, `fp32`, `bf16` (`ucdir.precision`).
    """

    choices: Choices
    results: Path
    max_pixels: int
    models: ModelAllowList
    device: str = "auto"
    precision: str = "auto"


def _uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class Jobs:
    """Cancel flags of the running restorations, one per browser session."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._flags[session] = threading.Event()
        return flag

    def cancel(self, session: str) -> None:
        with self._lock:
            if session in self._flags:
                self._flags[session].set()

    def finish(self, session: str) -> None:
        with self._lock:
            self._flags.pop(session, None)


def _views(results: Sequence[Result], index: int) -> tuple[Any, ...]:
    """Slider (or before/after pair), x_init, mean and spread images of one result."""
    r = results[index]
    pair = (_uint8(r.lq), _uint8(r.restored))
    mean = None if r.mean is None else _uint8(r.mean)
    spread = None if r.std is None else _uint8(np.clip(r.std * 4, 0, 1))
    return (pair, _uint8(r.x_init), mean, spread, r.command)


def build_app(settings: Settings) -> gr.Blocks:
    """The page: uploads and settings left, results right; nothing runs until `launch`."""
    start = settings.choices
    jobs = Jobs()
    counter = itertools.count()
    slider = hasattr(gr, "ImageSlider")

    # uploads in gradio's cache are removed after a day (checked hourly); results stay
    with gr.Blocks(
        title="ucdir: restore photos", analytics_enabled=False, delete_cache=(3600, 86400)
    ) as app:
        gr.Markdown(
            "## ucdir: restore photos\nA diffusion model samples the residual over an initial "
            "prediction (UCDIR). Each result names the `python -m ucdir.restore` command that "
            "writes it again."
        )
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="photos", file_count="multiple", file_types=UPLOAD_TYPES)
                # a typed value reaches the server, which refuses it with a message unless the
                # operator allows any model (gradio would silently put the old value back)
                model = gr.Dropdown(
                    settings.models.names,
                    value=start.pretrained,
                    label="model",
                    info=(
                        "a model this server offers, or the path of an exported model folder "
                        "or a hub id (user/repo)"
                        if settings.models.allow_any
                        else "one of the models this server offers"
                    ),
                    allow_custom_value=True,
                    elem_id="model",
                )
                with gr.Row():
                    sampler = gr.Dropdown(samplers(), value=start.sampler, label="sampler")
                    steps = gr.Slider(
                        0, 50, value=start.steps, step=1, label="steps (0: the sampler's own)"
                    )
                guidance = gr.Slider(
                    0,
                    10,
                    value=start.guidance,
                    step=0.5,
                    label="guidance: realness (0) ↔ fidelity to x_init (more)",
                )
                num_samples = gr.Slider(1, 8, value=start.num_samples, step=1, label="samples (K)")
                with gr.Row():
                    patch = gr.Radio(list(PATCHES), value=start.patch, label="patch splitting")
                    tile = gr.Slider(96, 1024, value=start.tile, step=32, label="tile (px)")
                with gr.Row():
                    seed = gr.Number(value=start.seed, precision=0, label="seed", minimum=0)
                    reseed = gr.Button("new seed", size="sm")
                with gr.Row():
                    run = gr.Button("Restore", variant="primary", elem_id="restore")
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown(EMPTY_STATUS, elem_id="status")
                shown = gr.Dropdown(
                    [], label="result shown", visible=False, type="index", interactive=True
                )
                with gr.Tabs():
                    with gr.Tab("before / after"):
                        if slider:
                            compare = gr.ImageSlider(
                                label="input | restored", format="png", elem_id="compare"
                            )
                            compare_outputs: list[Any] = [compare]
                        else:
                            with gr.Row():
                                before = gr.Image(label="input", format="png")
                                after = gr.Image(label="restored", format="png")
                            compare_outputs = [before, after]
                    with gr.Tab("x_init"):
                        x_init = gr.Image(label="initial prediction u(lq)", format="png")
                    with gr.Tab("mean of K"):
                        mean = gr.Image(label="mean of the samples (K > 1)", format="png")
                    with gr.Tab("spread of K"):
                        spread = gr.Image(
                            label="per-pixel standard deviation × 4 (K > 1)", format="png"
                        )
                command = gr.Textbox(
                    label="the same with the command line",
                    interactive=False,
                    elem_id="command",
                    buttons=["copy"],
                )
                downloads = gr.File(
                    label="downloads (PNG + JSON)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        results = gr.State([])

        def unpack(views: tuple[Any, ...]) -> list[Any]:
            pair, *rest = views
            return [pair, *rest] if slider else [pair[0], pair[1], *rest]

        def nothing(message: str) -> list[Any]:
            """The outputs for a request that restored nothing: the reason, empty views."""
            gr.Warning(message, duration=None)
            empty = [None] * (len(compare_outputs) + 3)
            return [
                f"**Nothing restored.**\n\n{message}",
                gr.Dropdown(visible=False),
                *empty,
                "",
                None,
                [],
            ]

        def restore_all(
            paths: list[str] | None,
            pretrained: str,
            sampler_name: str,
            n_steps: float,
            scale: float,
            k: float,
            patch_name: str,
            tile_px: float,
            seed_value: float | None,
            request: gr.Request,
            progress: gr.Progress = gr.Progress(),  # noqa: B008 (gradio's progress marker)
        ) -> list[Any]:
            if not paths:
                return nothing("Upload a photo first.")
            try:
                choices = Choices(
                    pretrained=str(pretrained or "").strip(),
                    sampler=sampler_name,
                    steps=int(n_steps),
                    seed=int(seed_value or 0),
                    guidance=float(scale),
                    num_samples=int(k),
                    patch=patch_name,  # type: ignore[arg-type]
                    tile=int(tile_px),
                )
                settings.models.source(choices.pretrained)  # one message, not one per photo
            except InputError as err:
                log.warning("%s", err)
                return nothing(str(err))
            session = request.session_hash or "default"
            cancel = jobs.start(session)
            job = settings.results / f"{next(counter):04d}"
            done: list[Result] = []
            errors: list[str] = []
            try:
                for i, path in enumerate(paths):

                    def report(fraction: float, desc: str, i: int = i) -> None:
                        progress((i + fraction) / len(paths), desc=desc)

                    try:
                        done.append(
                            restore_upload(
                                path,
                                choices,
                                job / f"{i:02d}",
                                models=settings.models,
                                max_pixels=settings.max_pixels,
                                device=settings.device,
                                precision=settings.precision,
                                report=report,
                                cancel=cancel,
                            )
                        )
                    except InputError as err:
                        log.warning("%s", err)
                        errors.append(str(err))
            except CancelRequestedError as err:  # the page has stopped waiting; this frees the CPU
                log.info("%s after %d of %d image(s)", err, len(done), len(paths))
                return nothing(f"{err}.")
            finally:
                jobs.finish(session)
            if not done:
                return nothing("\n".join(f"- {e}" for e in errors))
            lines = [f"Restored {len(done)} of {len(paths)} image(s), seed {choices.seed}."]
            lines += [f"- ⚠ {e}" for e in errors]
            names = [f"{i + 1}. {Path(r.sidecar['output']).name}" for i, r in enumerate(done)]
            return [
                "\n".join(lines),
                gr.Dropdown(choices=names, value=names[0], visible=len(done) > 1),
                *unpack(_views(done, 0)),
                [str(f) for r in done for f in r.files],
                done,
            ]

        def show(index: int | None, done: list[Result]) -> list[Any]:
            if not done or index is None:
                raise gr.Error("no result to show")
            return unpack(_views(done, int(index)))

        views = [*compare_outputs, x_init, mean, spread, command]
        event = run.click(
            restore_all,
            inputs=[files, model, sampler, steps, guidance, num_samples, patch, tile, seed],
            outputs=[status, shown, *views, downloads, results],
            show_progress_on=compare_outputs[-1],
            concurrency_limit=1,
            concurrency_id="restore",
        )

        # the click stops the queued or running event; the flag stops the computation itself
        def cancel(request: gr.Request) -> None:
            jobs.cancel(request.session_hash or "default")

        stop.click(cancel, inputs=None, outputs=None, cancels=[event], queue=False)
        shown.input(show, inputs=[shown, results], outputs=views)
        reseed.click(lambda: random.randrange(2**31), outputs=seed, queue=False)
    return app
