"""`python -m ucdir.demo` (`make demo`): the main job on the embedded default data.

Trains the demo model (full initial predictor + a small diffusion network) on JPEG quality-10
pairs of the photos shipped in the package, on the CPU, for a few minutes; then restores the
held-out photo with the paper's sampler and writes `demo_panel.png` (lq | x_init | restored | gt)
and `demo_metrics.json` (PSNR/SSIM of the JPEG input, x_init and the restoration) into the run
directory.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from ucdir.callbacks.images import panel
from ucdir.checkpoints import load_state
from ucdir.config_files import CONFIG_DIR
from ucdir.restore import restore
from ucdir.restore.cli import write_png
from ucdir.train import train
from ucdir.types import PairBatch

log = logging.getLogger(__name__)


def _scores(image: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": round(float(peak_signal_noise_ratio(image, gt, data_range=1.0)), 3),  # type: ignore[arg-type]
        "ssim": round(float(structural_similarity_index_measure(image, gt, data_range=1.0)), 4),  # type: ignore[arg-type]
    }


def demo(cfg: DictConfig, out_dir: Path) -> dict[str, object]:
    """Trains, restores the held-out sample, writes the panel and the metrics; returns them."""
    start = time.perf_counter()
    train(cfg)
    trained = time.perf_counter() - start
    model = instantiate(cfg.model)
    load_state(model, out_dir / "checkpoints" / "last.ckpt")  # EMA weights once EMA started
    model.eval()
    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    batch = PairBatch(*next(iter(datamodule.val_dataloader())))
    cfg_sampler = hydra.compose(  # the paper's sampler, composed from the sampler group
        config_name="train",
        overrides=[
            f"sampler={cfg.demo.sampler}",
            f"sampler.steps={cfg.demo.steps}",
            "schedule=linear_eval",
        ],
    ).sampler
    sampler = instantiate(cfg_sampler)
    out = restore(
        batch.lq,
        model.predictor,
        model.denoiser,
        sampler,
        None,
        torch.Generator().manual_seed(int(cfg.seed)),
        scalars=batch.scalars,
    )
    write_png(panel(batch.lq, out.x_init, out.restored, batch.gt), out_dir / "demo_panel.png")
    result = {
        "image": "chelsea (held out), JPEG quality 10",
        "size": list(batch.gt.shape[-2:]),
        "jpeg_input": _scores(batch.lq, batch.gt),
        "x_init": _scores(out.x_init, batch.gt),
        "restored": _scores(out.restored, batch.gt),
        "sampler": f"{sampler.name}, {sampler.steps} steps",
        "train_steps": int(cfg.trainer.max_steps),
        "train_seconds": round(trained, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "panel": str(out_dir / "demo_panel.png"),
    }
    (out_dir / "demo_metrics.json").write_text(json.dumps(result, indent=2))
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="demo")
def main(cfg: DictConfig) -> None:
    result = demo(cfg, Path(HydraConfig.get().runtime.output_dir))
    lines = [
        f"demo: {result['train_steps']} training steps in {result['train_seconds']} s",
        f"  held-out image {result['image']}, {result['size'][1]}x{result['size'][0]}",  # type: ignore[index]
    ]
    for key in ("jpeg_input", "x_init", "restored"):
        s = result[key]
        lines.append(f"  {key:<11} PSNR {s['psnr']:6.2f} dB  SSIM {s['ssim']:.4f}")  # type: ignore[index]
    lines.append(f"  panel (lq | x_init | restored | gt): {result['panel']}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
