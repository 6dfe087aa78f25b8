"""`python -m ucdir.bench.gpu` (`make gpu-check`): the prepared GPU check, one table and one JSON.

Made for a GPU machine with a bare image and no network (its own PyTorch): first the package's
missing dependencies are installed from the wheels carried in `.whl/` (`make gpu-wheels` fetches
exactly those), then, each step timed and written to the JSON as soon as it ends:

1. ``tests``: the CUDA test suite (``pytest -m gpu``);
2. ``numerics``: bf16 autocast against fp32 on one batch of the full-size model (ε, loss,
   gradients);
3. ``throughput``: eager training of the **full-size** model on 256² crops in bf16-mixed, at the
   largest batch of `BATCHES` that fits and at the paper's 32: images/s, step time, peak memory,
   model FLOP utilisation against the chip's dense bf16 peak (`PEAK_BF16_TFLOPS`), the largest
   batch of an 80 and a 141 GB card from the memory at the two batches, hours per 100k steps;
4. ``train``: a real 200-step training of a small model (``model=demo``) on the embedded samples
   through `python -m ucdir.train trainer=gpu`, its loss falling;
5. ``restore``: a 1024×1024 restoration with the paper's 50-step DDPM, 10-step DPM-Solver++ and
   one network call (a student's cost), whole and in 256² tiles: seconds and peak memory;
6. ``compiled``: the throughput step with the denoiser `torch.compile`d (last: a slow compile
   leaves every other figure written).

Without CUDA it says "no CUDA device", runs every step on the CPU at toy sizes (a dry run of
everything that does not need CUDA, the wheel install with ``pip --dry-run``) and exits 0.

Only the standard library and torch are imported before the wheels are installed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {  # import name -> distribution (the wheels `make gpu-wheels` downloads)
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "antlr4": "antlr4-python3-runtime",
    "diffusers": "diffusers",
    "kornia": "kornia",
    "kornia_rs": "kornia_rs",
    "rawpy": "rawpy",
    "torch_fidelity": "torch-fidelity",
    "torchdata": "torchdata",
    "lpips": "lpips",
}
PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peak per chip (vendor data sheets)
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
}
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
    "any",
)
"""The GPU machine's wheel tags (`make gpu-wheels` downloads for the same)."""
BATCHES = (64, 48, 32, 16, 8)
"""Per-GPU batches tried for the throughput figure, largest first (the paper: 32)."""
CARDS_GIB = {"80 GB": 79.6, "141 GB": 139.8}


def gpu_peak_tflops(name: str) -> float | None:
    """The chip's dense bf16 peak (TFLOP/s) from its CUDA name, None when unknown."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


class Check:
    """The results so far; written to `out` after every step (a kill keeps what ran)."""

    def __init__(self, out: Path, dry: bool) -> None:
        self.out, self.dry = out, dry
        self.result: dict[str, Any] = {"steps": {}, "dry_run": dry}
        out.parent.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, step: Callable[[], dict[str, Any]]) -> None:
        print(f"gpu-check: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            value = {"ok": True, **step()}
        except Exception as err:  # a failing step is reported; the others still run
            value = {"ok": False, "error": f"{type(err).__name__}: {err}"[-2000:]}
        value["seconds"] = round(time.perf_counter() - start, 2)
        self.result["steps"][name] = value
        self.out.write_text(json.dumps(self.result, indent=1))
        print(
            f"gpu-check: {name} {'ok' if value['ok'] else 'FAILED'} in {value['seconds']} s",
            file=sys.stderr,
            flush=True,
        )


def missing_modules() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_wheels(wheels: Path, site: Path, dry: bool) -> dict[str, Any]:
    """Installs the carried wheels into `site` and puts it first on the import path (or, `dry`,
    only lets pip resolve them)."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    missing = missing_modules()
    if not files:
        if missing and not dry:
            raise RuntimeError(f"missing {missing} and no wheels in {wheels}: run make gpu-wheels")
        return {"wheels": 0, "missing_before": missing, "installed": []}
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        *files,
    ]
    if dry:  # resolve them for the GPU machine's Python (3.12, manylinux x86-64), install nothing
        cmd[4:4] = [
            "--dry-run",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *[f"--platform={p}" for p in PLATFORMS],
        ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"pip install failed: {done.stderr[-1500:]}")
    if not dry:
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(site), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
        )
        importlib.invalidate_caches()
    still = missing_modules()
    if still and not dry:
        raise RuntimeError(f"still missing after the wheels: {still}")
    return {"wheels": len(files), "missing_before": missing, "missing_after": still}


def run_tests(device: torch.device) -> dict[str, Any]:
    """``pytest -m gpu`` (collect only without CUDA): counts of passed/failed/skipped."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_gpu.py",
    ]
    if device.type != "cuda":
        cmd.append("--collect-only")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=420)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    if done.returncode not in (0, 5):
        raise RuntimeError(f"pytest -m gpu: {tail}\n{done.stdout[-3000:]}")
    return {"summary": tail}


def _model_cfg(model: str) -> Any:
    """The `model` config node of configs/model/<model>.yaml, as the train command composes it."""
    from ucdir.bench.networks import compose_run

    return compose_run([f"model={model}"]).model


def _train_flops(model_cfg: Any, crop: int) -> float:
    """FLOPs of one training sample: 3 × (2 × MACs) of the predictor and the denoiser forward."""
    from hydra.utils import instantiate

    from ucdir.stats import network_macs

    with torch.device("meta"):
        nets = instantiate(model_cfg.predictor), instantiate(model_cfg.denoiser)
    macs = network_macs(*nets, crop, device="meta")
    return 6.0 * (macs["predictor"] + macs["denoiser"])


def _step(
    model_cfg: Any, device: torch.device, crop: int, batch: int, compile: bool = False
) -> Callable[[], None]:
    """A bf16-mixed, channels-last training step of a fresh model (`ucdir.bench.training`)."""
    from ucdir.bench.training import train_step

    return train_step(model_cfg, device, crop, batch, True, True, compile)


def _run_row(mode: str, batch: int, m: dict, flops: float, peak: float | None) -> dict[str, Any]:
    images = batch / m["seconds"]
    return {
        "mode": mode,
        "batch": batch,
        "step_s": m["seconds"],
        "images_per_s": images,
        "peak_gib": m["peak_mib"] / 1024,
        "mfu": images * flops / (peak * 1e12) if peak else None,
    }


def _peak(device: torch.device) -> float | None:
    return gpu_peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def throughput(
    device: torch.device, model: str, crop: int, batches: tuple[int, ...], steps: int
) -> dict[str, Any]:
    """bf16-mixed eager training of `model` at crop²: the largest batch of `batches` that fits
    and the paper's 32 (when it fits), the memory per sample from the two, the largest batch of
    an 80 and a 141 GB card, and the hours of 100k steps of batch 32."""
    from ucdir.bench.memory import measure

    model_cfg = _model_cfg(model)
    flops, peak = _train_flops(model_cfg, crop), _peak(device)
    out: dict[str, Any] = {
        "model": model,
        "crop": crop,
        "gflops_per_sample": flops / 1e9,
        "peak_bf16_tflops": peak,
        "runs": [],
    }
    measured: dict[int, dict] = {}
    for batch in batches:
        try:
            measured[batch] = measure(_step(model_cfg, device, crop, batch), device, 2, steps)
            break
        except torch.OutOfMemoryError:
            gc.collect()
            torch.cuda.empty_cache()
    if not measured:
        raise RuntimeError(f"no batch of {batches} fits")
    (fitted,) = measured
    second = 32 if fitted > 32 else max(1, fitted // 4)
    gc.collect()
    measured[second] = measure(_step(model_cfg, device, crop, second), device, 1, steps)
    for batch, m in sorted(measured.items(), reverse=True):
        out["runs"].append(_run_row("eager", batch, m, flops, peak))
    per_sample = (measured[fitted]["peak_mib"] - measured[second]["peak_mib"]) / (fitted - second)
    fixed = measured[fitted]["peak_mib"] - per_sample * fitted
    out["mib_per_sample"] = per_sample
    out["largest_batch"] = {
        card: int((gib * 1024 - fixed) // per_sample) if per_sample > 0 else None
        for card, gib in CARDS_GIB.items()
    }
    out["batch"] = fitted
    at_32 = measured.get(32)
    seconds_32 = at_32["seconds"] if at_32 else 32 * measured[fitted]["seconds"] / fitted
    out["hours_per_100k_steps_batch32"] = 100_000 * seconds_32 / 3600
    return out


def compiled(
    device: torch.device, model: str, crop: int, batch: int, steps: int, really: bool = True
) -> dict:
    """The same training step with the denoiser `torch.compile`d (compile time apart); `really`
    false (the dry run) times it eagerly: an inductor compile takes a minute on a CPU."""
    from ucdir.bench.memory import measure
    from ucdir.bench.timing import sync

    model_cfg = _model_cfg(model)
    step = _step(model_cfg, device, crop, batch, compile=really)
    start = time.perf_counter()
    step()  # the compile
    sync(device)
    compile_s = time.perf_counter() - start
    m = measure(step, device, 1, steps)
    row = _run_row("compiled", batch, m, _train_flops(model_cfg, crop), _peak(device))
    return {"model": model, "crop": crop, "compile_s": compile_s, "runs": [row]}


def train_small(device: torch.device, steps: int, workdir: Path) -> dict[str, Any]:
    """`python -m ucdir.train` of a small model on the embedded samples; the loss must fall."""
    run = workdir / "train_small"
    if device.type == "cuda":
        args = [
            "model=demo",
            "trainer=gpu",
            f"trainer.max_steps={steps}",
            "data.crop=128",
            "data.batch_size=16",
            "sampler.steps=2",
        ]
    else:
        args = [
            "model=tiny",
            "trainer=cpu",
            f"trainer.max_steps={steps}",
            "data.crop=32",
            "data.batch_size=2",
            "sampler.steps=1",
            "data.eval_crop=64",
        ]
    cmd = [
        sys.executable,
        "-m",
        "ucdir.train",
        "task=samples",
        "logger=csv",
        *args,
        "trainer.log_every_n_steps=1",
        f"trainer.val_check_interval={steps}",
        "trainer.limit_val_batches=1",
        f"hydra.run.dir={run}",
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400)
    if done.returncode:
        raise RuntimeError(f"train failed: {done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    losses = _csv_losses(run)
    k = max(1, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    if device.type == "cuda" and not last < first:
        raise RuntimeError(f"the loss did not fall: first {first:.4f}, last {last:.4f}")
    return {
        "steps": steps,
        "wall_s": wall,
        "loss_first": first,
        "loss_last": last,
        "logged": len(losses),
    }


def _csv_losses(run: Path) -> list[float]:
    import csv

    losses = []
    for path in sorted(run.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses.append(float(row["train/loss"]))
    if not losses:
        raise RuntimeError(f"no train/loss logged under {run}")
    return losses


def restoration(
    device: torch.device, model: str, size: int, tile: int, samplers: dict[str, tuple[str, int]]
) -> dict[str, Any]:
    """restore() of a size² image with each sampler, whole and in tiles (precision auto)."""
    from hydra.utils import instantiate

    from ucdir.bench.memory import measure
    from ucdir.bench.networks import compose_run
    from ucdir.diffusion.patching import PatchSplit
    from ucdir.precision import prepare_networks, resolve_precision
    from ucdir.restore import restore

    cfg = compose_run([f"model={model}", "schedule=linear_eval"])
    predictor = instantiate(cfg.model.predictor).eval().to(device)
    denoiser = instantiate(cfg.model.denoiser).eval().to(device)
    precision = resolve_precision("auto", device)
    prepare_networks(precision, device, predictor, denoiser)
    lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for label, (name, steps) in samplers.items():
        run_cfg = compose_run([f"model={model}", f"sampler={name}", f"sampler.steps={steps}"])
        sampler = instantiate(run_cfg.sampler)
        for patch in (None, PatchSplit(tile=tile, overlap=tile // 8)):

            def call(sampler: Any = sampler, patch: Any = patch) -> None:
                gen = torch.Generator(device=device).manual_seed(0)
                restore(lq, predictor, denoiser, sampler, patch, gen, precision=precision)

            m = measure(call, device, 0, 1)
            rows.append(
                {
                    "sampler": label,
                    "steps": steps,
                    "layout": "whole" if patch is None else f"tiles {tile}",
                    "seconds": m["seconds"],
                    "peak_gib": m["peak_mib"] / 1024,
                }
            )
    return {"model": model, "size": size, "precision": precision, "rows": rows}


def numerics(device: torch.device, model: str, batch: int, crop: int) -> dict[str, Any]:
    """bf16 autocast vs fp32 on the same batch: ε, loss and gradients of the denoiser."""
    from hydra.utils import instantiate

    from ucdir.bench.networks import eps_inputs

    torch.manual_seed(0)
    # eval: no dropout, the two passes differ only by precision
    denoiser = instantiate(_model_cfg(model).denoiser).to(device).eval()
    x_t, gamma, cond = eps_inputs(denoiser, crop, crop, device)
    x_t = x_t.expand(batch, -1, -1, -1).contiguous()

    def repeat(t: torch.Tensor) -> torch.Tensor:
        return t.expand(batch, *t.shape[1:]).contiguous()

    scalars = None if cond.scalars is None else repeat(cond.scalars)
    cond = type(cond)(repeat(cond.lq), repeat(cond.x_init), scalars)
    gamma = gamma.expand(batch).contiguous()
    out = {}
    for dtype in ("fp32", "bf16"):
        denoiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            eps = denoiser(x_t, gamma, cond)
        loss = eps.float().square().mean()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in denoiser.parameters() if p.grad is not None])
        out[dtype] = (eps.detach().float(), float(loss.detach()), grads.detach().clone())
    (e32, l32, g32), (e16, l16, g16) = out["fp32"], out["bf16"]
    return {
        "eps_max_abs": float((e16 - e32).abs().max()),
        "eps_relative": float((e16 - e32).norm() / e32.norm()),
        "loss_relative": abs(l16 - l32) / abs(l32),
        "grad_cosine": float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)),
        "finite": bool(torch.isfinite(e16).all() and torch.isfinite(g16).all()),
    }


def full_size(device: torch.device, model: str, height: int, width: int, steps: int) -> dict:
    """The authors' released model's job (`python -m ucdir.convert`): one SID frame restored
    in 512 px tiles with the paper's DDPM (`ucdir.bench.fullsize`), precision auto."""
    from ucdir.bench.fullsize import bench_fullsize
    from ucdir.bench.networks import BenchModel
    from ucdir.precision import resolve_precision

    tile = 512 if device.type == "cuda" else 32
    threads = torch.get_num_threads()
    precision = resolve_precision("auto", device)
    row = bench_fullsize(
        BenchModel(model, device), height, width, tile, tile // 8, "ddpm", steps, threads, precision
    )
    return {"model": model, **row}


def table(result: dict[str, Any]) -> str:
    """The check's one Markdown table."""
    lines = [
        f"GPU check: {result['device']}; torch {result['torch']}"
        + (
            " (dry run on the CPU at toy sizes: the numbers mean nothing)"
            if result["dry_run"]
            else ""
        ),
        "",
        "| step | what | result |",
        "| --- | --- | --- |",
    ]
    steps = result["steps"]

    def add(step: str, what: str, value: str) -> None:
        lines.append(f"| {step} | {what} | {value} |")

    for name, value in steps.items():
        if not value.get("ok"):
            add(name, "FAILED", value.get("error", "").replace("\n", " ")[:300])
            continue
        if name == "wheels":
            add(name, f"{value['wheels']} wheels", f"missing before: {value['missing_before']}")
        elif name == "tests":
            add(name, "pytest -m gpu", value["summary"])
        elif name in ("throughput", "compiled"):
            for r in value["runs"]:
                mfu = f", MFU {r['mfu']:.1%}" if r["mfu"] is not None else ""
                comp = f" (compile {value['compile_s']:.0f} s)" if "compile_s" in value else ""
                add(
                    name,
                    f"{value['model']} {value['crop']}², batch {r['batch']}, bf16-mixed, "
                    f"{r['mode']}{comp}",
                    f"{r['images_per_s']:.1f} img/s, {r['step_s']:.3f} "
                    f"s/step, {r['peak_gib']:.1f} GiB{mfu}",
                )
            if name == "throughput":
                add(
                    name,
                    "largest batch per card (memory linear in the batch, two points)",
                    ", ".join(f"{k}: {v}" for k, v in value["largest_batch"].items()),
                )
                add(
                    name,
                    "100k steps of batch 32 on one GPU",
                    f"{value['hours_per_100k_steps_batch32']:.1f} h",
                )
        elif name == "train":
            add(
                name,
                f"{value['steps']} steps, small model, embedded samples",
                f"loss {value['loss_first']:.4f} → {value['loss_last']:.4f}, "
                f"{value['wall_s']:.0f} s",
            )
        elif name == "restore":
            for r in value["rows"]:
                add(
                    name,
                    f"{value['model']} {value['size']}², {r['sampler']}, {r['layout']}, "
                    f"{value['precision']}",
                    f"{r['seconds']:.2f} s, {r['peak_gib']:.2f} GiB",
                )
        elif name == "fullsize":
            add(
                name,
                f"{value['model']} {value['width']}×{value['height']}, {value['sampler']} "
                f"{value['steps']} steps, {value['tiles']} tiles {value['tile']}, "
                f"{value['precision']}",
                f"{value['seconds']:.1f} s, {value['peak_mib'] / 1024:.2f} GiB",
            )
        elif name == "numerics":
            add(
                name,
                "bf16 vs fp32, same batch",
                f"ε max {value['eps_max_abs']:.3g}, ε rel {value['eps_relative']:.2e}, loss rel "
                f"{value['loss_relative']:.2e}, grad cos {value['grad_cosine']:.5f}",
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ucdir.bench.gpu", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "outputs")) / "gpu-check.json"
    )
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl")
    parser.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "ucdir-site")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print(
            "gpu-check: no CUDA device: a dry run of every step on the CPU at toy sizes",
            file=sys.stderr,
        )
    check = Check(args.out, dry=not cuda)
    skip = {s for s in args.skip.split(",") if s}
    check.result.update(
        {
            "device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    check.run("wheels", lambda: install_wheels(args.wheels, args.site, dry=not cuda))
    if str(REPO / "src") not in sys.path:
        sys.path.insert(0, str(REPO / "src"))
    if cuda:
        torch.backends.cudnn.benchmark = True
    big = "ucdir" if cuda else "tiny"  # the full-size model on the GPU
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "tests": lambda: run_tests(device),
        "numerics": lambda: numerics(
            device, "ucdir" if cuda else "tiny", 8 if cuda else 2, 256 if cuda else 32
        ),
        "throughput": lambda: throughput(
            device, big, 256 if cuda else 32, BATCHES if cuda else (4, 2), 5 if cuda else 1
        ),
        "train": lambda: train_small(device, 200 if cuda else 3, Path(tempfile.mkdtemp())),
        "restore": lambda: restoration(
            device,
            "ucdir" if cuda else "tiny",
            1024 if cuda else 64,
            256 if cuda else 32,
            {
                "50-step DDPM": ("ddpm", 50 if cuda else 2),
                "10-step DPM-Solver++": ("dpmpp", 10 if cuda else 2),
                "1 call (student)": ("distilled", 1),
            },
        ),
    }
    steps["fullsize"] = lambda: full_size(
        device, big, 1416 if cuda else 64, 2120 if cuda else 96, 50 if cuda else 2
    )
    steps["compiled"] = lambda: compiled(
        device,
        big,
        256 if cuda else 32,
        int(check.result["steps"]["throughput"]["batch"]),
        5 if cuda else 1,
        really=cuda,
    )  # last: a slow compile leaves every other figure written
    for name, step in steps.items():
        if name not in skip:
            check.run(name, step)
            if cuda:
                torch.cuda.empty_cache()
    text = table(check.result)
    (args.out.with_suffix(".md")).write_text(text + "\n")
    print(text)
    print(f"gpu-check: JSON in {args.out}", file=sys.stderr)
    failed = [n for n, v in check.result["steps"].items() if not v["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
