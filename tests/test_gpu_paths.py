"""The GPU paths, exercised on this CPU: the precision knob (bf16 autocast where AMX makes it
fast), restoration and training under bf16, `model.compile=true` through inductor, channels-last,
and no hidden CUDA device or host synchronisation in the training step (static search)."""

from __future__ import annotations

import ast
import csv
import json
import logging
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import ucdir.precision as precision_module
from tests.commands import run_module
from tests.conftest import compose
from ucdir.models.denoiser import ConditionalUNet
from ucdir.models.predictor import InitialPredictor
from ucdir.precision import cpu_has_amx, resolve_precision, trainer_precision
from ucdir.restore import restore
from ucdir.types import Cond

SRC = Path(__file__).resolve().parents[1] / "src" / "ucdir"
CPU = torch.device("cpu")


# --- the precision knob -------------------------------------------------------------------------


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    amx, avx2 = tmp_path / "amx", tmp_path / "avx2"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_has_amx(amx) and not cpu_has_amx(avx2)
    assert not cpu_has_amx(tmp_path / "absent")  # another system: fp32


@pytest.mark.parametrize("amx", [True, False])
def test_auto_chooses_bf16_only_with_amx(monkeypatch: pytest.MonkeyPatch, amx: bool) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_amx", lambda: amx)
    assert resolve_precision("auto", CPU) == ("bf16" if amx else "fp32")
    assert trainer_precision("auto", "cpu") == ("bf16-mixed" if amx else "32-true")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    assert trainer_precision("32-true", "cpu") == "32-true"  # a given value is kept
    with pytest.raises(ValueError, match="precision='half': choose auto, fp32 or bf16"):
        resolve_precision("half", CPU)


def test_the_commands_default_to_auto() -> None:
    assert compose("restore", ["input=a", "output=b"]).precision == "auto"
    assert compose("eval", []).precision == "auto"
    assert compose("app", []).precision == "auto"
    assert compose("train", ["trainer=cpu"]).trainer.precision == "auto"
    assert compose("train", ["trainer=gpu"]).trainer.precision == "bf16-mixed"
    assert compose("train", []).trainer.precision == "32-true"  # the paper's default trainer


# --- restoration under bf16 ---------------------------------------------------------------------


class SpySampler:
    """A sampler that records the dtype of every noise prediction it is given."""

    def __init__(self, inner: object) -> None:
        self.inner, self.steps, self.dtypes = inner, inner.steps, []  # type: ignore[attr-defined]

    def initial_noise(self, *args: object) -> Tensor:
        return self.inner.initial_noise(*args)  # type: ignore[attr-defined]

    def __call__(self, eps_fn, x_T, cond, *, generator=None, callback=None):  # type: ignore[no-untyped-def]
        def spy(x: Tensor, gamma: Tensor, c: Cond) -> Tensor:
            out = eps_fn(x, gamma, c)
            self.dtypes.append(out.dtype)
            return out

        return self.inner(spy, x_T, cond, generator=generator, callback=callback)  # type: ignore[operator]


def _conv_dtypes(*nets: nn.Module) -> tuple[list[torch.dtype], list]:
    seen: list[torch.dtype] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
        for net in nets
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    return seen, hooks


def test_restore_in_bf16_runs_the_networks_in_bf16_and_keeps_the_rest_fp32() -> None:
    from ucdir.hub import UCDIR

    model = UCDIR.load("jpeg-cpu-distilled")
    lq = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    results = {}
    for precision in ("fp32", "bf16"):
        sampler = SpySampler(model.default_sampler())
        seen, hooks = _conv_dtypes(model.predictor, model.denoiser)
        results[precision] = restore(
            lq,
            model.predictor,
            model.denoiser,
            sampler,  # type: ignore[arg-type]
            generator=torch.Generator().manual_seed(1),
            precision=precision,  # type: ignore[arg-type]
        )
        for hook in hooks:
            hook.remove()
        want = torch.bfloat16 if precision == "bf16" else torch.float32
        assert seen and set(seen) == {want}  # every convolution ran in that precision
        assert sampler.dtypes == [torch.float32]  # the sampler's arithmetic stays fp32
        assert results[precision].restored.dtype == torch.float32
        assert results[precision].x_init.dtype == torch.float32
    diff = (results["bf16"].restored - results["fp32"].restored).abs()
    assert float(diff.max()) < 0.03 and float(diff.mean()) < 2e-3


def test_restore_command_records_its_precision(tmp_path: Path) -> None:
    from ucdir.restore.cli import run

    Image.new("RGB", (48, 40), (120, 80, 40)).save(tmp_path / "in.png")
    for value in ("bf16", "fp32", "auto"):
        out = tmp_path / value
        cfg = compose(
            "restore",
            [
                "pretrained=jpeg-cpu-distilled",
                "sampler=distilled",
                "sampler.steps=1",
                f"input={tmp_path / 'in.png'}",
                f"output={out}",
                f"precision={value}",
                "patch=none",
                f"paths.output_dir={out}",
            ],
        )
        run(cfg)
        sidecar = json.loads((out / "in.json").read_text())
        assert sidecar["precision"] == resolve_precision(value, CPU)
        assert sidecar["config"]["precision"] == value
    with pytest.raises(ValueError, match="precision='fp16'"):
        run(compose("restore", ["pretrained=jpeg-cpu-distilled", f"input={tmp_path / 'in.png'}",
                                f"output={tmp_path / 'x'}", "precision=fp16"]))  # fmt: skip
    assert not (tmp_path / "x").exists()  # refused before anything was made


def _first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))


# --- channels-last ------------------------------------------------------------------------------


def test_channels_last_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(width=16, mults=(1, 2), attn_levels=(1,), kernels=4, dropout=0.0).eval()
    predictor = InitialPredictor(width=8).eval()
    x = torch.randn(2, 3, 32, 40)
    cond = Cond(torch.rand_like(x) * 2 - 1, torch.rand_like(x) * 2 - 1)
    gamma = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        want, want_u = net(x, gamma, cond), predictor(cond.lq)
        cl = torch.channels_last
        net, predictor = net.to(memory_format=cl), predictor.to(memory_format=cl)
        assert _first_conv(net).weight.is_contiguous(memory_format=cl)
        cond_cl = Cond(*(t.contiguous(memory_format=cl) for t in cond[:2]), None)
        got = net(x.contiguous(memory_format=cl), gamma, cond_cl)
        got_u = predictor(cond_cl.lq)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_u, want_u, atol=1e-5, rtol=1e-4)


# --- training in bf16-mixed on the CPU ------------------------------------------------------------


def _losses(run_dir: Path) -> list[float]:
    (path,) = run_dir.glob("**/metrics.csv")
    with path.open() as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


@pytest.mark.slow  # two 4-step tiny trainings with validation: ~15 s
def test_bf16_mixed_training_on_the_cpu_tracks_fp32(tmp_path: Path) -> None:
    from ucdir.checkpoints import read_checkpoint
    from ucdir.loader import load_model
    from ucdir.train import build

    losses, psnr = {}, {}
    for prec in ("32-true", "bf16-mixed"):
        out = tmp_path / prec
        cfg = compose(
            "train",
            [
                "debug=tiny",
                "logger=csv",
                f"paths.output_dir={out}",
                f"paths.log_dir={out}",
                f"trainer.precision={prec}",
                "trainer.fast_dev_run=false",
                "trainer.max_steps=4",
                "trainer.log_every_n_steps=1",
                "trainer.limit_val_batches=1",
                "trainer.val_check_interval=4",
                "trainer.num_sanity_val_steps=0",
            ],
        )
        L.seed_everything(cfg.seed, workers=True)  # as `train` does: the same data and noise
        datamodule, model, trainer = build(cfg)
        trainer.fit(model, datamodule=datamodule)
        losses[prec] = _losses(out)
        psnr[prec] = float(trainer.callback_metrics["val/psnr"])
        # bf16 on the CPU trains channels-last (oneDNN's bf16 layout), fp32 keeps its layout
        weight = _first_conv(model.denoiser).weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == (prec == "bf16-mixed")
        (ckpt,) = out.glob("**/last.ckpt")
        state = read_checkpoint(ckpt)["state_dict"]
        assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
        denoiser = load_model(ckpt_path=ckpt).denoiser  # loads back in fp32
        assert next(denoiser.parameters()).dtype == torch.float32
    assert len(losses["bf16-mixed"]) == len(losses["32-true"]) == 4
    # stated tolerances: the first step (the same weights, the same batch and noise) within 2 %;
    # later steps within 10 % (AdamW's first updates are sign-like: bf16 gradients of opposite
    # sign on small components move those weights apart; measured 0.7 % and up to 5.6 %)
    first, want = losses["bf16-mixed"][0], losses["32-true"][0]
    assert abs(first - want) <= 0.02 * want
    for got, want in zip(losses["bf16-mixed"], losses["32-true"], strict=True):
        assert math.isfinite(got) and abs(got - want) <= 0.10 * abs(want)
    assert math.isfinite(psnr["bf16-mixed"]) and abs(psnr["bf16-mixed"] - psnr["32-true"]) < 0.5


# --- torch.compile through inductor on the CPU ----------------------------------------------


def _grads(net: nn.Module) -> Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


@pytest.mark.slow  # one inductor compile of a small network, forward and backward: ~40 s
def test_compiled_denoiser_equals_eager_and_compiles_once() -> None:
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    net = ConditionalUNet(width=8, mults=(1, 2), blocks=1, attn_levels=(), mid_attn=False,
                          kernels=2, dropout=0.0)  # fmt: skip
    names = list(net.state_dict())
    x = torch.randn(2, 3, 16, 16)
    cond = Cond(torch.rand_like(x) * 2 - 1, torch.rand_like(x) * 2 - 1)
    gamma = torch.tensor([0.3, 0.9])
    eager = net(x, gamma, cond)
    eager.square().mean().backward()
    want = _grads(net).clone()
    torch._dynamo.reset()
    counters.clear()
    net.compile()
    graphs = []
    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompile is an error
        for step in range(3):
            net.zero_grad()
            out = net(x, gamma, cond)
            out.square().mean().backward()
            graphs.append(counters["stats"]["unique_graphs"])
            if step == 0:
                torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(_grads(net), want, atol=1e-5, rtol=1e-4)
    assert graphs[0] >= 1 and graphs == [graphs[0]] * 3  # compiled once, reused every step
    assert list(net.state_dict()) == names  # checkpoints keep their names
    torch._dynamo.reset()


def test_compile_falls_back_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, train_cfg
) -> None:
    import ucdir.lit_module as lit_module
    from ucdir.train import build

    reason = "torch.compile on the CPU needs a C++ compiler (g++, clang++ or $CXX), none found"
    monkeypatch.setattr(lit_module, "compile_unavailable", lambda device: reason)
    _, model, _ = build(train_cfg("model.compile=true"))
    with caplog.at_level(logging.WARNING):
        model.setup("fit")
    assert f"model.compile=true: {reason}; the denoiser runs eagerly" in caplog.text
    assert getattr(model.denoiser, "_compiled_call_impl", None) is None


# --- device independence, static -----------------------------------------------------------------

DEVICE_CHOOSERS = {"device.py", "precision.py", "bench/gpu.py"}
"""The only files that may name CUDA other than as a device type to compare with."""


def _is_type_comparison(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """`x.type == "cuda"`, `x.type != "cuda"`, `x.type in ("cpu", "cuda")`."""
    parent = parents.get(node)
    if isinstance(parent, ast.Tuple):
        parent = parents.get(parent)
    if not isinstance(parent, ast.Compare):
        return False
    sides = [parent.left, *parent.comparators]
    return any(isinstance(s, ast.Attribute) and s.attr == "type" for s in sides)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def cuda_literals(source: str) -> list[int]:
    """Lines of `source` that call `.cuda()` or name "cuda" other than as a device type compared."""
    tree = ast.parse(source)
    parents = _parents(tree)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "cuda" and not node.args:
                lines.append(node.lineno)
        # (prose in a message or a caption, "cuda max_memory_allocated", is no device)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("cuda")
            and not node.value.startswith("cuda ")
            and not _is_type_comparison(node, parents)
        ):
            lines.append(node.lineno)
    return lines


def test_no_hidden_cuda_device_in_the_package() -> None:
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel in DEVICE_CHOOSERS:
            continue
        if lines := cuda_literals(path.read_text()):
            found[rel] = lines
    assert found == {}, f"device literals (read the device from the tensors/trainer): {found}"


def test_the_cuda_search_finds_what_it_should() -> None:
    assert cuda_literals("x = y.cuda()\n") == [1]
    assert cuda_literals("x = torch.zeros(1, device='cuda')\n") == [1]
    assert cuda_literals("z = torch.device('cuda:0')\n") == [1]
    assert cuda_literals("ok = t.device.type == 'cuda'\nok = d.type in ('cpu', 'cuda')\n") == []


HOST_READS = {"item", "tolist", "cpu", "numpy"}
HOST_CASTS = {"float", "int", "bool"}
TRAINING_STEP = {  # the functions every training step runs, by file
    "lit_module.py": {"training_step", "on_train_batch_start"},
    "diffusion/objective.py": {"__call__", "forward", "loss", "_loss"},
}


def host_syncs(source: str, functions: set[str]) -> list[str]:
    """`name:line` of host reads of tensors (`.item()`, `.tolist()`, `.cpu()`, `.numpy()`,
    `float/int/bool(...)` of a non-literal, `if` on a tensor method) inside `functions`."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name not in functions:
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in HOST_READS:
                    found.append(f"{fn.name}:{node.lineno}")
                if (
                    isinstance(func, ast.Name)
                    and func.id in HOST_CASTS
                    and node.args
                    and _reads_tensor(node.args[0])
                ):
                    found.append(f"{fn.name}:{node.lineno}")
            if isinstance(node, ast.If | ast.While) and _calls_torch(node.test):
                found.append(f"{fn.name}:{node.lineno}")
    return found


def _reads_tensor(node: ast.AST) -> bool:
    """An expression that may be a tensor: not a plain attribute chain of config values."""
    return any(isinstance(n, ast.Call) for n in ast.walk(node)) or isinstance(node, ast.Subscript)


def _calls_torch(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "torch"
        for n in ast.walk(node)
    )


def test_the_training_step_never_reads_a_tensor_on_the_host() -> None:
    """The step's only host read is `_check_finite`, which on CUDA looks every
    `log_every_n_steps` steps (when Lightning reads the logged loss anyway)."""
    found = {}
    for rel, functions in TRAINING_STEP.items():
        if lines := host_syncs((SRC / rel).read_text(), functions):
            found[rel] = lines
    assert found == {}, f"host synchronisation in the training step: {found}"


def test_the_sync_search_finds_what_it_should() -> None:
    src = (
        "def training_step(self, batch):\n"
        "    loss = self.f(batch)\n"
        "    if not torch.isfinite(loss):\n"
        "        raise ValueError\n"
        "    print(loss.item(), float(loss.mean()))\n"
        "    return loss\n"
    )
    assert host_syncs(src, {"training_step"}) == [
        "training_step:3",
        "training_step:5",
        "training_step:5",
    ]
    assert (
        host_syncs("def training_step(self):\n    return float(self.lr)\n", {"training_step"}) == []
    )


# --- the prepared GPU check -----------------------------------------------------------------------


@pytest.mark.slow  # every step of the check at toy sizes on the CPU: ~20 s
def test_gpu_check_without_cuda_is_a_dry_run_that_exits_0(tmp_path: Path) -> None:

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check")
    out = tmp_path / "check.json"
    done = run_module(
        "ucdir.bench.gpu",
        f"--out={out}",
        f"--site={tmp_path / 'site'}",
        cwd=tmp_path,
        timeout=300,
        check=True,
    )
    assert "no CUDA device" in done.stderr
    result = json.loads(out.read_text())
    assert result["dry_run"] and list(result["steps"]) == [
        "wheels",
        "tests",
        "numerics",
        "throughput",
        "train",
        "restore",
        "fullsize",
        "compiled",
    ]
    assert all(step["ok"] for step in result["steps"].values())
    assert not (tmp_path / "site").exists()  # pip only resolved the wheels
    assert (
        "pytest -m gpu" in done.stdout and out.with_suffix(".md").read_text() in done.stdout + "\n"
    )
    numerics = result["steps"]["numerics"]
    assert numerics["finite"] and numerics["grad_cosine"] > 0.99
    assert result["steps"]["train"]["logged"] >= 3
    layouts = {(r["sampler"], r["layout"]) for r in result["steps"]["restore"]["rows"]}
    assert len(layouts) == 6  # three samplers, whole and in tiles


def test_gpu_check_peaks_and_a_failing_step_is_reported(tmp_path: Path) -> None:
    from ucdir.bench.gpu import Check, gpu_peak_tflops, table

    assert gpu_peak_tflops("NVIDIA H200") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_peak_tflops("Some Future GPU") is None
    check = Check(tmp_path / "c.json", dry=True)
    check.result.update({"device": "cpu", "torch": torch.__version__})

    def broken() -> dict:
        raise RuntimeError("boom")

    check.run("numerics", broken)
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["steps"]["numerics"]["ok"] is False
    assert "RuntimeError: boom" in saved["steps"]["numerics"]["error"]
    assert "| numerics | FAILED | RuntimeError: boom |" in table(check.result)
