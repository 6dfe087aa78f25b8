"""`python -m ucdir.ablation_table` (`make ablation-table`): the paper's Table 4 rows, counted.

For every `configs/experiment/ablation/<name>.yaml`, composes the `stats` config with that
experiment (as `python -m ucdir.stats experiment=ablation/<name>` does), builds the networks on
the meta device (shapes only, nothing is computed, so the whole table takes seconds) and prints a
Markdown table: the diffusion network's parameters; its MACs (`ucdir.stats.network_macs`) at the
exact size (128²) and at 160², the size the official code runs a 128² input at (it always pads
by up to 32 px), which is what the paper's MACs column counts; the convolution MACs alone at 160²
(the paper's figures match the official network's convolutions, without the attention products);
and the paper's MACs and LPIPS (SID) for reference.

    python -m ucdir.ablation_table [--rows full adain] [--size 128] [--padded-size 160]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from ucdir.config_files import CONFIG_DIR
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.stats import count_params, network_macs
from ucdir.types import Cond

ABLATION_DIR = Path(CONFIG_DIR) / "experiment" / "ablation"


class PaperRow(NamedTuple):
    """One row of the paper's Table 4 (SID, extreme low-light denoising)."""

    label: str
    lpips: float
    macs: float  # G, the official network at a 128² input padded to 160²


# In the paper's order.
PAPER: dict[str, PaperRow] = {
    "wo_layernorm": PaperRow("w/ → w/o LayerNorm", 0.227, 71.7),
    "ln_gn": PaperRow("LayerNorm → GroupNorm", 0.240, 71.7),
    "swish_relu": PaperRow("Swish → ReLU", 0.235, 71.7),
    "wo_spatial_guidance": PaperRow("w/o Spatial guidance", 0.240, 70.9),
    "internal_guidance": PaperRow("Internal feature guidance", 0.247, 72.1),
    "degraded_guidance": PaperRow("Degraded image guidance", 0.253, 71.7),
    "addition": PaperRow("Addition", 0.236, 71.5),
    "concatenation": PaperRow("Concatenation", 0.241, 112.7),
    "adain": PaperRow("AdaIN", 0.240, 71.5),
    "dvsr": PaperRow("DvSR", 0.244, 73.7),
    "full": PaperRow("Ours", 0.222, 71.7),
}


class AblationRow(NamedTuple):
    """Our counts for one ablation config (MACs in G), next to the paper's row (None if the
    config is not one of the paper's rows)."""

    name: str
    params: int
    macs: float
    macs_padded: float
    conv_macs_padded: float
    paper: PaperRow | None


def ablation_names() -> list[str]:
    """The ablation configs in `configs/experiment/ablation/`: the paper's rows in its order,
    then any others alphabetically."""
    found = {p.stem for p in ABLATION_DIR.glob("*.yaml")}
    return [n for n in PAPER if n in found] + sorted(found - PAPER.keys())


def compose_ablation(name: str, size: int = 128) -> DictConfig:
    """The `stats` config with `experiment=ablation/<name>` (what `python -m ucdir.stats` runs)."""
    if not (ABLATION_DIR / f"{name}.yaml").is_file():
        raise ValueError(f"no ablation config {name!r}; choose from {ablation_names()}")
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("stats", [f"experiment=ablation/{name}", f"input_size={size}"])


def _conv_macs(denoiser: ConditionalUNet, size: int) -> float:
    """MACs of the convolutions alone in one forward at size² (on the denoiser's device)."""
    dev = next(denoiser.parameters()).device
    x = torch.zeros(1, denoiser.channels, size, size, device=dev)
    lq = torch.zeros(1, denoiser.lq_channels, size, size, device=dev)
    scalars = (
        torch.zeros(1, len(denoiser.aux_scalars), device=dev) if denoiser.aux_scalars else None
    )
    gamma = torch.full((1,), 0.5, device=dev)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        denoiser.eval()(x, gamma, Cond(lq, x, scalars))
    return counter.get_flop_counts()["Global"].get(torch.ops.aten.convolution, 0) / 2


def count_row(name: str, size: int = 128, padded_size: int = 160) -> AblationRow:
    """Parameters and MACs of the diffusion network of one ablation config, counted on the meta
    device (the same counts as real tensors on a CPU, for free)."""
    cfg = compose_ablation(name, size)
    with torch.device("meta"):
        predictor: InitialPredictor = instantiate(cfg.model.predictor)
        denoiser: ConditionalUNet = instantiate(cfg.model.denoiser)
    macs = network_macs(predictor, denoiser, size, device="meta")["denoiser"]
    macs_padded = network_macs(predictor, denoiser, padded_size, device="meta")["denoiser"]
    return AblationRow(
        name,
        count_params(denoiser),
        macs / 1e9,
        macs_padded / 1e9,
        _conv_macs(denoiser, padded_size) / 1e9,
        PAPER.get(name),
    )


def to_markdown(rows: Sequence[AblationRow], size: int = 128, padded_size: int = 160) -> str:
    """The rows as a Markdown table."""
    head = (
        f"| config | Table 4 row | diffusion params | MACs {size}² (G) | MACs {padded_size}² (G) "
        f"| conv MACs {padded_size}² (G) | paper MACs (G) | paper LPIPS |"
    )
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        label, lpips, paper_macs = (
            (r.paper.label, f"{r.paper.lpips:.3f}", f"{r.paper.macs:.1f}")
            if r.paper
            else ("", "", "")
        )
        lines.append(
            f"| `ablation/{r.name}` | {label} | {r.params:,} | {r.macs:.2f} | {r.macs_padded:.2f} "
            f"| {r.conv_macs_padded:.2f} | {paper_macs} | {lpips} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ucdir.ablation_table", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", nargs="+", default=None, help="config names (default: all)")
    parser.add_argument("--size", type=int, default=128, help="exact input size (px)")
    parser.add_argument(
        "--padded-size", type=int, default=160, help="the official code's padded size (px)"
    )
    args = parser.parse_args(argv)
    names = args.rows or ablation_names()
    rows = [count_row(n, args.size, args.padded_size) for n in names]
    note = (
        f"\nMACs = FLOPs/2 of one forward of the diffusion network (convolution, matmul, addmm, "
        f"bmm; attention included). The official code pads a {args.size}² input to "
        f"{args.padded_size}²; the paper's full-model figure (71.7 G) is the official network's "
        "convolutions alone at that size (71.73 G). "
        "LPIPS: the paper's SID results, for reference (not measured here).\n"
    )
    sys.stdout.write(to_markdown(rows, args.size, args.padded_size) + "\n" + note)


if __name__ == "__main__":
    main()
