"""`python -m ucdir.bench [overrides]` (`make bench`): speed and memory on the current device.

For every model in `models` (configs/model/<name>.yaml), the figures (configs/bench.yaml), one
module each:

- `forward`: the diffusion network's forward time (median after warm-up, batch 1, eval, no_grad)
  and achieved MAC/s (MACs counted as `ucdir.stats`), next to the official network's CPU times
  (notes §9.3: 2 threads, exact size, median of 5, the range over three runs);
- `restore`: one `restore()` (predictor + N sampler steps) per megapixel, for each sampler;
- `patch`: one noise-prediction call on a height × width image, tiled (`PatchSplit`) and whole,
  and the peak memory of each;
- `train` (module `training`): training throughput (objective forward + backward + AdamW step on
  random batches; no data loading), samples per second at the per-device batch;
- `akgm`: one AKGM layer at the model's first-level width on a size² tile, the earlier
  multiply-and-sum fusion next to the batched matmul: time and peak memory;
- `precision`: fp32 vs bf16 autocast, with and without channels_last (forward and training);
- `data` (module `data_pipeline`): the training loader alone (samples/s for loader workers ×
  ``data.crops_per_image`` × ``data.cache``) next to one training step at the same crop/batch.

Every time comes from `timing.timed`; every memory figure from `memory.measure`: on CUDA
`torch.cuda.max_memory_allocated`, on a CPU the peak resident set size of a fresh process per
configuration (Linux VmHWM, reset before the call) and what the call added to it. `run.bench`
runs the figures; `run.to_markdown` prints one Markdown table per figure (`table.Table`), then
`main` prints the whole result as one JSON line.
"""

from ucdir.bench.run import SECTIONS, bench, by_device, to_markdown

__all__ = ["SECTIONS", "bench", "by_device", "to_markdown"]
