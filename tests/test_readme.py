"""Every `python -m ucdir.…` command printed in the README works as printed.

Placeholders (`<run>`, `<folder>`, `/data/...`, `photos/`, `…`) are replaced by tiny real data
and a checkpoint of a tiny run. Training commands (train, demo) are composed and fully
instantiated (data, model, trainer) rather than run for their full length; the web app
(`ucdir.app`, a server) is composed and its page built, not served; the benchmark runs its
figures at toy sizes; every other command runs to completion.
`make demo` and `make test` are exercised by tests/test_demo.py and CI.
"""

import itertools
import re
import shlex
from pathlib import Path

import pytest

from tests.commands import run_module
from tests.conftest import REPO, SHARED_DATA, compose
from tests.data.conftest import write_images
from tests.data.test_gopro import synthetic_gopro
from tests.data.test_sid import KDC, fake_sid
from tests.test_official import configs as official_configs
from tests.test_official import documented_layout, random_release
from ucdir.convert import convert
from ucdir.hub import shipped_models

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
FROM_BLOCKS = [
    line.split("  #")[0].strip()
    for block in BLOCKS
    for line in block.splitlines()
    if re.match(r"\s*(\.venv/bin/)?python -m ucdir\.", line)
]
INLINE = re.findall(r"`((?:\.venv/bin/)?python -m ucdir\.[^`]+)`", README)
COMMANDS = list(dict.fromkeys(FROM_BLOCKS + [c for c in INLINE if "=" in c]))


def test_readme_names_the_setup_and_test_commands() -> None:
    assert COMMANDS
    assert any("make demo" in block for block in BLOCKS)
    assert any("make test" in block for block in BLOCKS)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, checkpoint: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("readme")
    run = checkpoint.parent.parent  # the shared one-step tiny run (tests/conftest.py)
    clean = base / "clean"
    write_images(clean, [(72, 64)] * 20)
    (base / "list.txt").write_text("".join(f"img_{i:03d} 0\n" for i in range(4)))
    photos = base / "photos"
    write_images(photos, [(60, 44)])
    from PIL import Image

    Image.open(next(photos.iterdir())).save(base / "photo.jpg", quality=10)
    gt = base / "gt"
    write_images(gt, [(208, 112)] * 2)  # NIQE needs two 96² blocks
    restored = base / "restored_in"
    write_images(restored, [(208, 112)] * 2, ext=".png")
    from ucdir.export import export

    exported = export(run / "checkpoints" / "last.ckpt", base / "exported")
    paths = {
        "exported": exported,
        "run": run,
        "clean": clean,
        "list": base / "list.txt",
        "photos": photos,
        "jpeg": base / "photo.jpg",
        "gopro": synthetic_gopro(base / "GOPRO_Large", size=(208, 112)),
        "gt": gt,
        "restored": restored,
        "out": base / "out",
        "base": base,
    }
    if SHARED_DATA.is_dir():
        paths["sid"] = fake_sid(
            base / "SID",
            SHARED_DATA / "raw",
            {
                "train": [("00001", "0.1", KDC), ("00002", "0.04", KDC)],
                "val": [("20001", "0.1", KDC)],
                "test": [("10001", "0.1", KDC)],
            },
        )
    return paths


def official_release(f: dict[str, Path]) -> tuple[Path, Path]:
    """The authors' release (full size, random weights, the documented layout) and its
    conversion, made on first use (the README's `convert` and `format=official` commands)."""
    if "release" not in f:
        f["release"] = f["base"] / "release"
        random_release(f["release"], documented_layout())
        f["converted"] = convert(f["release"], f["base"] / "converted", official_configs())
    return f["release"], f["converted"]


def substitute(command: str, f: dict[str, Path]) -> list[str]:
    ckpt = str(f["run"] / "checkpoints" / "last.ckpt")
    out = []
    official = "format=official" in command
    scored = "metrics=" not in command and ("mode=score" in command or "pretrained=" in command)
    for token in shlex.split(command):
        if token.startswith("[") and token.endswith("]") and "=" in token:
            continue  # an optional argument shown in brackets
        key, _, value = token.partition("=")
        if key in ("ckpt_path", "predictor_ckpt", "blend.ckpt_path"):
            value = ckpt
        elif key == "official":
            value = str(official_release(f)[0])
        elif key == "pretrained" and official:
            value = str(official_release(f)[1])
        elif key in ("pretrained", "blend.pretrained") and value not in shipped_models():
            value = str(f["exported"])
        elif key in ("restored", "data.lq") and value.startswith("/data/") and scored:
            value = str(f["restored"])  # pairs of 208x112 images (NIQE needs two 96² blocks)
        elif key in ("gt", "data.gt") and value.startswith("/data/") and scored:
            value = str(f["gt"])
        elif value.startswith("/data/GOPRO_Large"):
            value = str(f["gopro"])
        elif value.startswith("/data/SID"):
            if "sid" not in f:
                pytest.skip("../shared/data/raw is not present")
            value = str(f["sid"])
        elif value.endswith(".txt") and value.startswith("/data/"):
            value = str(f["list"])
        elif value.startswith("/data/"):
            value = str(f["clean"])
        elif value == "../shared/data/train" and not SHARED_DATA.is_dir():
            pytest.skip("../shared/data is not present")
        elif key == "input" and value == "photo.jpg":
            value = str(f["jpeg"])
        elif key == "input":
            value = str(f["photos"] if value.endswith("/") else next(f["photos"].iterdir()))
        elif key == "experiment" and value.startswith("jpeg_cpu") and not SHARED_DATA.is_dir():
            pytest.skip("../shared/data is not present")
        elif key == "output":
            value = str(f["out"] / value.strip("/"))
        elif key == "restored" and "<" in value:
            value = str(f["restored"])
        elif key == "gt" and "<" in value:
            value = str(f["gt"])
        elif key == "data.lq" and "<" in value:  # task=paired: inputs and targets by name
            value = str(f["restored"])
        elif key == "data.gt" and "<" in value:
            value = str(f["gt"])
        out.append(f"{key}={value}" if _ else token)
    if "data.root=../shared/data/train" in out and any(
        t.startswith(("pretrained=", "ckpt_path=")) for t in out
    ):
        out += ["limit=1"]  # a model restoring the 16 photos: one photo, at most two steps
        if not any(t.startswith("sampler.steps=") for t in out):
            out.append("sampler.steps=2")
    task = next((t.split("=", 1)[1] for t in out if t.startswith("task=")), None)
    if task in ("gopro", "sid", "jpeg", "blind") and not any(
        t.startswith("data.root=") for t in out
    ):
        # a command that relies on the default dataset location: point it at the tiny copy
        default = {"gopro": "/data/GOPRO_Large", "sid": "/data/SID"}.get(task, "/data/clean")
        out += substitute(f"data.root={default}", f)
    return out


def train_overrides(args: list[str]) -> list[list[str]]:
    """The override sets of a train command (a -m sweep expands to its combinations)."""
    if "-m" not in args:
        return [args]
    rest = [a for a in args if a != "-m"]
    options = [
        [f"{a.split('=')[0]}={v}" for v in a.split("=", 1)[1].split(",")]
        if "," in a and "[" not in a
        else [a]
        for a in rest
    ]
    return [list(c) for c in itertools.product(*options)]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_works(command: str, fixtures: dict[str, Path]) -> None:
    argv = shlex.split(command)
    module = argv[argv.index("-m") + 1]
    args = substitute(" ".join(shlex.quote(a) for a in argv[argv.index("-m") + 2 :]), fixtures)
    if module in ("ucdir.train", "ucdir.demo"):
        from ucdir.train import build

        for overrides in train_overrides(args):
            extra = [
                f"paths.output_dir={fixtures['base'] / 'train'}",
                "data.num_workers=0",
                "data.batch_size=2",
                f"paths.data_dir={fixtures['base'] / 'data'}",
            ]
            if any(o.startswith(("task=jpeg", "task=blind", "task=paired")) for o in overrides):
                extra.append("data.val_count=4")
            if any(o in ("trainer=gpu", "trainer=ddp") for o in overrides):
                import torch

                if not torch.cuda.is_available():  # the GPU configs, built on this CPU
                    extra += ["trainer.accelerator=cpu", "trainer.precision=32-true"]
            cfg = compose(module.split(".")[1], [*overrides, *extra])
            datamodule, model, trainer = build(cfg)
            datamodule.prepare_data()  # as Trainer.fit does (the SID cache, if missing)
            datamodule.setup("fit")
            assert model is not None and trainer is not None
        return
    if module == "ucdir.app":
        pytest.importorskip("gradio")
        from ucdir.app.__main__ import settings
        from ucdir.app.layout import build_app

        cfg = compose("app", [*args, f"paths.output_dir={fixtures['base'] / 'app'}"])
        assert build_app(settings(cfg)) is not None
        return
    if module == "ucdir.bench":  # the figure's code at toy sizes: the real one lasts 22 min here
        args += ["models=[tiny]", "threads=1", "fullsize.height=64", "fullsize.width=96"]
        args += ["fullsize.tile=32", "fullsize.overlap=8", "fullsize.sampler.cpu.steps=2"]
        args += ["shipped.height=32", "shipped.width=48", "shipped.repeats=1"]
    env_dir = fixtures["base"] / "hydra" / re.sub(r"\W+", "_", command)[:80]
    env = {
        "UCDIR_DATA_DIR": str(fixtures["base"] / "data"),
        "UCDIR_LOG_DIR": str(fixtures["base"] / "logs"),
    }
    run_module(module, *args, f"hydra.run.dir={env_dir}", env=env, check=True)
