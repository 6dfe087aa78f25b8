"""`python -m ucdir.bench [overrides]` (`make bench`): speed and memory on the current device.

For every model in `models` (configs/model/<name>.yaml), the figures (configs/bench.yaml), one
module each:

- `forward`: the diffusion network's fp32 forward time, contiguous and channels-last (median after
  warm-up, batch 1, eval, no_grad) and achieved MAC/s (MACs counted as `ucdir.stats`), next to
  the official AKGM formulation measured in the same run and the official network's CPU times
  (notes §9.3: an AVX2 machine, 2 threads, exact size, the range over three runs);
- `restore`: one `restore()` (predictor + N sampler steps) per megapixel, for each sampler;
- `patch`: one noise-prediction call on a height × width image, tiled (`PatchSplit`) and whole,
  and the peak memory of each;
- `train` (module `training`): training throughput (objective forward + backward + AdamW step on
  random batches; no data loading), samples per second at the per-device batch;
- `akgm`: one AKGM layer at the model's first-level width on a size² tile, the earlier
  multiply-and-sum fusion next to the batched matmul: time and peak memory;
- `precision`: fp32 vs bf16 autocast, with and without channels_last, side by side: forward,
  restoration with 1 and 10 network calls, training step (`ucdir.precision` is what the commands
  use);
- `data` (module `data_pipeline`): the training loader alone (samples/s for loader workers ×
  ``data.crops_per_image`` × ``data.cache``) next to one training step at the same crop/batch.

Every time comes from `timing.timed`; every memory figure from `memory.measure`: on CUDA
`torch.cuda.max_memory_allocated`, on a CPU the peak resident set size of a fresh process per
configuration (Linux VmHWM, reset before the call) and what the call added to it. `run.bench`
runs the figures; `run.to_markdown` prints one Markdown table per figure (`table.Table`), then
`main` prints the whole result as one JSON line.

`python -m ucdir.bench.gpu` (`make gpu-check`, module `gpu`) is the prepared check of a GPU
machine: the CUDA tests, full-size training throughput, a real short training, 1024² restoration
and bf16 numerics in one table and one JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ucdir.bench.run import SECTIONS, bench, by_device, to_markdown

__all__ = ["SECTIONS", "bench", "by_device", "to_markdown"]


def __getattr__(name: str) -> Any:
    """The figures' names on first use: `python -m ucdir.bench.gpu` imports this package on a
    bare GPU machine before it has installed hydra (`ucdir.bench.run` needs it)."""
    if name in __all__:
        from ucdir.bench import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
