"""The web app: its logic on a tiny exported model, its config, and the page in a real browser.

The browser test starts `python -m ucdir.app` on a free local port and drives Debian's chromium
through playwright (skipped when either is missing). With `UCDIR_APP_PRETRAINED=jpeg-cpu
UCDIR_APP_PHOTO=<image> UCDIR_APP_SCREENSHOT=docs/app.png` it restores that photo with that model
at the app's default settings, saves the screenshot there and prints the upload-to-result time.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.commands import run_module, start_module
from tests.conftest import REPO, compose
from ucdir.app.engine import (
    Choices,
    InputError,
    ModelAllowList,
    cached_model,
    check_upload,
    restore_upload,
    samplers,
)
from ucdir.app.progress import CancelRequestedError
from ucdir.hub import UCDIR, shipped_models

PHOTO = REPO / "src" / "ucdir" / "assets" / "samples" / "val" / "chelsea.png"
SAMPLER = {
    "_target_": "ucdir.diffusion.sampling.Sampler",
    "schedule": {
        "_target_": "ucdir.diffusion.schedules.LinearSchedule",
        "num_steps": 50,
        "beta_start": 1e-6,
        "beta_end": 0.4,
    },
    "scheduler": {
        "_target_": "diffusers.DPMSolverMultistepScheduler",
        "_partial_": True,
        "algorithm_type": "dpmsolver++",
    },
    "steps": 2,
}


def tiny_model(folder: Path, in_channels: int = 3) -> Path:
    """An exported model of random tiny networks (in_channels=4: a packed-raw model)."""
    torch.manual_seed(0)
    model = UCDIR(
        predictor={
            "_target_": "ucdir.models.predictor.InitialPredictor",
            "in_channels": in_channels,
            "width": 4,
        },
        denoiser={
            "_target_": "ucdir.models.denoiser.ConditionalUNet",
            "lq_channels": in_channels,
            "width": 8,
            "mults": [1, 2],
            "attn_levels": [],
            "kernels": 4,
            "dropout": 0.0,
        },
        sampler=SAMPLER,
        task={"name": "jpeg", "lq_channels": in_channels},
    )
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def photo(path: Path, size: tuple[int, int] = (80, 56), quality: int = 10) -> Path:
    """A crop of a real photo, saved as JPEG (or PNG by the suffix)."""
    w, h = size
    image = Image.open(PHOTO).convert("RGB").crop((100, 60, 100 + w, 60 + h))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality) if path.suffix == ".jpg" else image.save(path)
    return path


def offering(model: Path) -> ModelAllowList:
    """The models `python -m ucdir.app pretrained=<model>` offers: it and the shipped ones."""
    return ModelAllowList.of(str(model))


def truncated(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PHOTO.read_bytes()[:2000])
    return path


def test_app_config_composes_with_valid_defaults() -> None:
    cfg = compose("app", ["paths.output_dir=/tmp/x"])
    assert cfg.server.name == "127.0.0.1" and cfg.server.port == 7860
    assert cfg.pretrained in shipped_models() and cfg.results == "/tmp/x/results"
    ui = cfg.restore
    choices = Choices(str(cfg.pretrained), ui.sampler, ui.steps, ui.seed, ui.guidance)
    assert choices.sampler in samplers() and ui.patch in ("tiles", "auto", "none")
    restore_keys = compose("restore", ["input=a", "output=b"])
    assert {"sampler", "patch", "seed", "guidance", "num_samples"} <= set(restore_keys)


def test_restore_upload_gives_images_sidecar_and_command(tiny: Path, tmp_path: Path) -> None:
    src = photo(tmp_path / "in.jpg", (150, 100))
    seen: list[tuple[float, str]] = []
    choices = Choices(str(tiny), "dpmpp", steps=2, num_samples=2, tile=96, seed=3)
    result = restore_upload(
        src,
        choices,
        tmp_path / "out",
        models=offering(tiny),
        max_pixels=10**6,
        report=lambda f, d: seen.append((f, d)),
    )
    lq = np.asarray(Image.open(src), dtype=np.float32) / 255
    assert result.restored.shape == result.x_init.shape == lq.shape == (100, 150, 3)
    assert np.abs(result.restored - result.lq).mean() > 1e-3
    assert result.mean is not None and result.std is not None and result.std.max() > 0
    names = [f.name for f in result.files]
    assert names == ["in.png", "in.json", "in_mean.png", "in_std.png"]
    assert all(f.is_file() for f in result.files)
    assert Image.open(result.files[0]).size == (150, 100)
    sidecar = json.loads(result.files[1].read_text())
    assert sidecar["seed"] == 3 and sidecar["steps"] == 2 and sidecar["num_samples"] == 2
    assert sidecar["config"]["sampler"]["steps"] == 2 and sidecar["patch"]["tile"] == 96
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any("tile 6/6" in d for _, d in seen)  # 150×100 in 96 px tiles, 32 px margins: 2×3
    assert result.command.startswith("python -m ucdir.restore pretrained=")
    assert "sampler=dpmpp sampler.steps=2 seed=3" in result.command
    assert "num_samples=2 patch=tiles patch.tile=96" in result.command


def test_the_command_shown_writes_the_same_result(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ucdir.restore.cli import run

    name = "my photo (1).png"  # a name Hydra and the shell must both get quoted
    src = photo(tmp_path / "upload" / name)
    choices = Choices(str(tiny), "ddim", steps=3, guidance=1.5, patch="none", seed=7)
    result = restore_upload(src, choices, tmp_path / "app", models=offering(tiny), max_pixels=10**6)
    argv = shlex.split(result.command)
    assert argv[:3] == ["python", "-m", "ucdir.restore"]
    monkeypatch.chdir(src.parent)  # the command names the file as the user uploaded it
    args = [a for a in argv[3:] if not a.startswith("output=")]
    cfg = compose("restore", [*args, f"output={tmp_path / 'cli'}", f"paths.output_dir={tmp_path}"])
    (written,) = run(cfg)
    assert written.read_bytes() == result.files[0].read_bytes()
    cli_sidecar = json.loads(written.with_suffix(".json").read_text())
    assert set(cli_sidecar) == set(result.sidecar)
    for key in ("seed", "sampler", "steps", "guidance", "patch", "checkpoint_sha256", "size"):
        assert cli_sidecar[key] == result.sidecar[key], key


def test_bad_uploads_and_models_are_messages(tiny: Path, tmp_path: Path) -> None:
    good = photo(tmp_path / "good.png")
    choices = Choices(str(tiny), steps=1)
    ours = offering(tiny)
    with pytest.raises(InputError, match="cannot read image"):
        restore_upload(
            truncated(tmp_path / "cut.png"), choices, tmp_path, models=ours, max_pixels=10**6
        )
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match=r"input: cannot read image notes\.png: "):
        restore_upload(tmp_path / "notes.png", choices, tmp_path, models=ours, max_pixels=10**6)
    # a decompression bomb is refused from its header: the pixels are never decoded
    Image.new("L", (6000, 5000)).save(tmp_path / "bomb.png")
    (tmp_path / "bomb_head.png").write_bytes((tmp_path / "bomb.png").read_bytes()[:64])
    with pytest.raises(
        InputError, match=r"bomb_head\.png claims 30,000,000 pixels.*max_pixels=16,777,216"
    ):
        check_upload(tmp_path / "bomb_head.png", max_pixels=16 * 2**20)
    with pytest.raises(InputError, match=r"good\.png claims .*max_pixels=1,000\b"):
        restore_upload(good, choices, tmp_path, models=ours, max_pixels=1000)
    raw = tiny_model(tmp_path / "raw", in_channels=4)
    anything = ModelAllowList.of(str(tiny), allow_any=True)
    with pytest.raises(InputError, match="packed raw Bayer"):
        restore_upload(good, Choices(str(raw)), tmp_path, models=anything, max_pixels=10**6)
    with pytest.raises(InputError, match="no such folder"):
        nope = Choices(str(tmp_path / "nope"))
        restore_upload(good, nope, tmp_path, models=anything, max_pixels=10**6)
    with pytest.raises(InputError, match="sampler must be one of"):
        Choices(str(tiny), sampler="karras")
    with pytest.raises(InputError, match=r"steps must be in 1\.\.50"):
        restore_upload(good, Choices(str(tiny), steps=80), tmp_path, models=ours, max_pixels=10**6)


def test_models_are_loaded_once_and_a_cancel_stops_the_restoration(
    tiny: Path, tmp_path: Path
) -> None:
    assert cached_model(str(tiny), "cpu") is cached_model(str(tiny), "cpu")
    cancel = threading.Event()
    calls: list[str] = []

    def report(fraction: float, desc: str) -> None:
        calls.append(desc)
        cancel.set()  # the user presses cancel during the first step

    with pytest.raises(CancelRequestedError, match="cancelled"):
        restore_upload(
            photo(tmp_path / "in.png"),
            Choices(str(tiny), steps=5),
            tmp_path / "out",
            models=offering(tiny),
            max_pixels=10**6,
            report=report,
            cancel=cancel,
        )
    assert len(calls) == 1


def test_the_page_builds_from_the_app_config(tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from ucdir.app.__main__ import settings
    from ucdir.app.layout import build_app

    cfg = compose("app", [f"pretrained={tiny}", "max_pixels=1000", f"paths.output_dir={tmp_path}"])
    chosen = settings(cfg)
    assert chosen.max_pixels == 1000 and chosen.results == tmp_path / "results"
    app = build_app(chosen)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"restore", "cancel", "status", "command", "downloads"} <= ids


# ---------------------------------------------------------------- what a visitor may load

NOT_OFFERED = r"is not offered by this server; choose one of: "


def hostile_upload(uploads: Path) -> Path:
    """A folder as gradio's upload endpoint makes one, holding a visitor's config.json."""
    folder = uploads / "0123abcd"
    folder.mkdir(parents=True)
    bad = {"predictor": {"_target_": "os.system", "_args_": ["touch pwned"]}}
    (folder / "config.json").write_text(json.dumps(bad))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def nothing_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the engine fail loudly if it touches an upload or loads a model."""

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"read {args}")

    monkeypatch.setattr("ucdir.app.engine.load_model", read)
    monkeypatch.setattr("ucdir.app.engine.check_upload", read)


def test_visitors_choose_only_the_operators_models(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    models_dir = tmp_path / "models"
    shutil.copytree(tiny, models_dir / "mine")
    (models_dir / "half").mkdir()  # no weights: not an exported model
    shutil.copy(tiny / "config.json", models_dir / "half")
    allowed = ModelAllowList.of("jpeg-cpu", models_dir, results=tmp_path / "results")
    shipped = [n for n in shipped_models() if n != "jpeg-cpu"]
    assert allowed.names == ["jpeg-cpu", *shipped, "mine"] and not allowed.allow_any
    assert allowed.source("jpeg-cpu") == "jpeg-cpu"
    assert allowed.source("mine") == str(models_dir / "mine")
    upload = hostile_upload(tmp_path / "gradio")
    typed = [str(tiny), "user/repo", "../x", str(upload), str(models_dir / "half"), "mine/", ""]
    for name in typed:
        with pytest.raises(InputError, match=NOT_OFFERED + "jpeg-cpu, "):
            allowed.source(name)
    # the server checks what it receives (a visitor can call the API without the page)
    src = photo(tmp_path / "in.png")
    result = restore_upload(
        src,
        Choices("mine", steps=1, patch="none"),
        tmp_path / "ok",
        models=allowed,
        max_pixels=10**6,
    )
    assert f"pretrained={models_dir / 'mine'} " in result.command  # the CLI finds it by path
    nothing_is_read(monkeypatch)
    for name in (str(upload), "user/repo"):
        with pytest.raises(InputError, match=NOT_OFFERED):
            restore_upload(src, Choices(name), tmp_path / "no", models=allowed, max_pixels=10**6)
    assert not (tmp_path / "no").exists() and not (tmp_path / "pwned").exists()


def test_any_model_is_an_opt_in_and_never_an_upload(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    results = tmp_path / "results"
    anything = ModelAllowList.of("jpeg-cpu", allow_any=True, results=results)
    elsewhere = shutil.copytree(tiny, tmp_path / "elsewhere")
    for name in (str(elsewhere), "user/repo", "jpeg-cpu"):
        assert anything.source(name) == name
    upload = hostile_upload(tmp_path / "gradio")
    (tmp_path / "link").symlink_to(upload)
    default_uploads = Path(tempfile.gettempdir()) / "gradio" / "0123abcd"
    refused = [
        str(upload),
        str(upload / "config.json"),
        f"{elsewhere}/../gradio/{upload.name}",
        str(tmp_path / "link"),
        str(results / "0000" / "00"),
        str(default_uploads),
    ]
    for name in refused:
        with pytest.raises(InputError, match="uploads and results are never models"):
            anything.source(name)
    nothing_is_read(monkeypatch)
    with pytest.raises(InputError, match="uploads and results are never models"):
        restore_upload(
            photo(tmp_path / "in.png"),
            Choices(str(upload)),
            tmp_path,
            models=anything,
            max_pixels=9,
        )
    with pytest.raises(ValueError, match=r"lies inside .*uploads and results are never models"):
        ModelAllowList.of("jpeg-cpu", tmp_path / "gradio")


def test_a_network_address_needs_a_sign_in_or_the_insecure_opt_in(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gr = pytest.importorskip("gradio")
    from ucdir.app.__main__ import AUTH_ENV, ServerConfigError, serve, sign_in

    caplog.set_level("INFO")
    server = compose("app", ["paths.output_dir=/tmp/x"]).server
    assert server.insecure is False
    for name in ("127.0.0.1", "localhost", "::1"):
        server.name = name
        assert sign_in(server, {}) is None
    for name in ("0.0.0.0", "192.168.1.5", "::", "myhost.lan"):
        server.name = name
        with pytest.raises(ServerConfigError, match=r"UCDIR_APP_AUTH=.*server\.insecure=true"):
            sign_in(server, {})
    password = "s3cr:et pw"
    assert sign_in(server, {AUTH_ENV: f"ana:{password}"}) == ("ana", password)
    for bad in ("ana", "ana:", f":{password}"):
        with pytest.raises(ServerConfigError, match="must be user:password") as err:
            sign_in(server, {AUTH_ENV: bad})
        assert password not in str(err.value)
    server.insecure = True
    assert sign_in(server, {}) is None and "WITHOUT sign-in" in caplog.text

    launched: dict = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **kw: launched.update(kw, app=app))
    monkeypatch.setenv(AUTH_ENV, f"ana:{password}")
    models_dir = tmp_path / "models"
    shutil.copytree(tiny, models_dir / "mine")
    overrides = ["server.name=0.0.0.0", f"models_dir={models_dir}", f"paths.output_dir={tmp_path}"]
    serve(compose("app", overrides))
    assert launched["auth"] == ("ana", password) and launched["server_name"] == "0.0.0.0"
    (box,) = [b for b in launched["app"].blocks.values() if getattr(b, "elem_id", "") == "model"]
    shipped = [n for n in shipped_models() if n != "jpeg-cpu"]
    assert [value for _, value in box.choices] == ["jpeg-cpu", *shipped, "mine"]
    assert password not in caplog.text


def test_the_app_refuses_to_start_on_the_network_without_a_sign_in(tmp_path: Path) -> None:
    args = ["server.name=0.0.0.0", f"server.port={free_port()}", f"hydra.run.dir={tmp_path}"]
    done = run_module(
        "ucdir.app",
        *args,
        env={"UCDIR_APP_AUTH": None, "UCDIR_LOG_DIR": str(tmp_path / "logs")},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: server.name=0.0.0.0 serves other machines: set UCDIR_APP_AUTH=user:password in "
        "the environment for a sign-in, or server.insecure=true to serve without one"
    ]


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.skip("no chromium found (Debian: apt-get install chromium)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local: no proxy
    with opener.open(url, timeout=timeout) as response:
        return int(response.status)


def wait_for_server(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}")
        try:
            if get(url, timeout=2) == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the app did not answer at {url} within {seconds} s")


@pytest.fixture
def served(tiny: Path, tmp_path: Path):
    """`python -m ucdir.app` on a free port; yields (url, settings used, log file)."""
    pretrained = os.environ.get("UCDIR_APP_PRETRAINED")
    args = (
        [f"pretrained={pretrained}"]
        if pretrained
        else [
            f"pretrained={tiny}",
            "restore.steps=2",
            "restore.patch=none",
        ]
    )
    port = free_port()
    log = tmp_path / "app.log"
    env = {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "UCDIR_LOG_DIR": str(tmp_path / "logs"),
    }
    with open(log, "w") as out:
        process = start_module(
            "ucdir.app",
            *args,
            f"server.port={port}",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, process)
        yield url, process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_in_a_real_browser(served, tiny: Path, tmp_path: Path) -> None:
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    url, process, log = served
    given = os.environ.get("UCDIR_APP_PHOTO")
    upload = Path(given) if given else photo(tmp_path / "upload" / "photo.jpg")
    cut = truncated(tmp_path / "upload" / "broken.png")
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url)
                ),
            )
            page.goto(url)
            page.locator("#restore").wait_for()
            start = time.monotonic()
            page.locator("input[type=file]").first.set_input_files(str(upload))
            page.get_by_text(upload.stem).first.wait_for(timeout=60_000)  # the upload is listed
            page.locator("#restore").click()
            page.get_by_text("Restored 1 of 1").wait_for(timeout=600_000)
            seconds = time.monotonic() - start
            page.get_by_text("python -m ucdir.restore").first.wait_for(timeout=10_000)
            shot = Path(os.environ.get("UCDIR_APP_SCREENSHOT", tmp_path / "app.png"))
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nupload -> result: {seconds:.1f} s ({upload.name}); screenshot {shot}")

            saved = {}
            links = page.locator("#downloads a")
            for i in range(links.count()):
                with page.expect_download() as download:
                    links.nth(i).click()
                name = download.value.suggested_filename
                download.value.save_as(tmp_path / "downloads" / name)
                saved[Path(name).suffix] = tmp_path / "downloads" / name
            assert set(saved) == {".png", ".json"}, saved
            restored = np.asarray(Image.open(saved[".png"]).convert("RGB"), dtype=np.float32)
            original = np.asarray(Image.open(upload).convert("RGB"), dtype=np.float32)
            assert restored.shape == original.shape
            assert np.abs(restored - original).mean() > 0.1
            sidecar = json.loads(saved[".json"].read_text())
            assert sidecar["size"] == list(original.shape[:2])

            page.reload()
            page.locator("#restore").wait_for()
            page.locator("input[type=file]").first.set_input_files(str(cut))
            page.get_by_text(cut.stem).first.wait_for(timeout=60_000)
            page.locator("#restore").click()
            page.locator("#status").get_by_text("Nothing restored").wait_for(timeout=120_000)
            assert "cannot read image broken.png" in page.locator("#status").inner_text()

            # a visitor types the folder of a working model into the model box: refused unread
            elsewhere = shutil.copytree(tiny, tmp_path / "elsewhere")
            page.reload()
            page.locator("#restore").wait_for()
            page.locator("input[type=file]").first.set_input_files(str(upload))
            page.get_by_text(upload.stem).first.wait_for(timeout=60_000)
            page.get_by_label("model", exact=True).fill(str(elsewhere))
            page.get_by_label("model", exact=True).press("Enter")
            page.locator("#restore").click()
            page.locator("#status").get_by_text("Nothing restored").wait_for(timeout=60_000)
            refusal = page.locator("#status").inner_text()
            assert f"model '{elsewhere}' is not offered by this server" in refusal, refusal
        finally:
            browser.close()
    assert process.poll() is None, log.read_text()[-3000:]
    assert get(url) == 200  # the server still answers
    assert not outside, f"the page reached outside the app: {outside}"
