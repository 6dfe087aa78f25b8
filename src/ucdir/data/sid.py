"""Extreme low-light denoising: SID Sony short/long-exposure raw pairs ("See in the Dark").

Pairs come from ``Sony_{train,val,test}_list.txt`` (``./Sony/short/00001_00_0.04s.ARW
./Sony/long/00001_00_10s.ARW ISO200 F8`` per line). The exposure ratio min(long / short, 300) is
applied in the raw domain with each file's own black and white levels (clipped at white); input
and target are rendered with identical rawpy settings (`ucdir.data.raw.render_params`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ucdir.data.base import PairDataModule, scalar_vector
from ucdir.data.images import existing_dir, existing_file
from ucdir.data.seeding import sample_generator
from ucdir.data.sid_cache import CacheJob, CacheKind, build_cache, cache_target
from ucdir.data.transforms import random_crop_pair, random_hflip, to_tensor
from ucdir.data.visits import FileItems
from ucdir.types import PairBatch

log = logging.getLogger(__name__)

InputKind = Literal["rgb", "packed"]
_EXPOSURE = re.compile(r"_(\d+(?:\.\d+)?)s$")


class SIDPair(NamedTuple):
    """One listed pair: short-exposure input, long-exposure target, exposure ratio, list line."""

    short: Path
    long: Path
    ratio: float
    where: str


def exposure_time(path: str | Path) -> float:
    """Exposure time in seconds from a SID file name (``00001_00_0.04s.ARW`` -> 0.04)."""
    match = _EXPOSURE.search(Path(path).stem)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"no exposure time in {Path(path).name!r} (expected e.g. 00001_00_0.04s.ARW)"
        )
    return float(match.group(1))


def read_pairs(list_path: Path, root: Path, key: str, max_ratio: float) -> list[SIDPair]:
    """Pairs of a SID list file, paths relative to `root`; ratio = min(long/short, max_ratio)."""
    listed = existing_file(list_path, key)
    pairs: list[SIDPair] = []
    for number, line in enumerate(listed.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{key}: {listed} line {number}"
        if len(tokens) < 2:
            raise ValueError(f"{where}: expected 'short long ISO F', got {line!r}")
        try:
            ratio = min(exposure_time(tokens[1]) / exposure_time(tokens[0]), max_ratio)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        pairs.append(SIDPair(root / tokens[0], root / tokens[1], ratio, where))
    if not pairs:
        raise ValueError(f"{key}: {listed} lists no pairs")
    return pairs


class SIDDataset(FileItems, Dataset[PairBatch]):
    """(lq, gt, scalars) from the decoded cache (`ucdir.data.sid_cache`).

    Args:
        pairs: the listed pairs.
        files: (lq cache file, gt cache file) of each pair.
        packed: `lq` is packed Bayer raw (4 channels, half the size of `gt`), amplified here by
            the pair's ratio and clipped to 1; otherwise `lq` is the amplified RGB render.
        trim: px dropped on every side of the half-size grid (``2 * trim`` for full-size
            targets): 4 turns SID Sony's 2128×1424 half-size renders into the paper's 2120×1416.
        crop: training crop side of `gt` in px (`lq` gets ``crop / 2`` when packed); None for
            whole images (evaluation).
        max_ratio: the exposure-ratio cap; the scalar ``exposure_ratio`` = ratio / max_ratio.
        aux_scalars: names of the scalars to return.
        rank: process rank, mixed into the training randomness.
    """

    def __init__(
        self,
        pairs: Sequence[SIDPair],
        files: Sequence[tuple[Path, Path]],
        packed: bool,
        trim: int,
        crop: int | None,
        max_ratio: float,
        aux_scalars: Sequence[str],
        rank: int = 0,
    ) -> None:
        self.pairs, self.files = list(pairs), list(files)
        self.packed, self.trim, self.crop = packed, trim, crop
        self.max_ratio, self.aux_scalars, self.rank = max_ratio, tuple(aux_scalars), rank

    item_lists = ("pairs", "files")

    def sources(self) -> list[tuple[Path, ...]]:
        return list(self.files)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PairBatch:
        key, index = index, index % len(self.pairs)  # a training key (see ucdir.data.order)
        pair = self.pairs[index]
        lq_file, gt_file = self.files[index]
        lq, gt = self._aligned(
            np.load(lq_file, mmap_mode="r"), np.load(gt_file, mmap_mode="r"), pair
        )
        scale = 2 if self.packed else 1
        generator = sample_generator(key, None, self.rank)
        if self.crop is not None:
            c = self.crop // scale
            if lq.shape[0] >= c and lq.shape[1] >= c:  # read only the window from disk
                top = int(torch.randint(0, lq.shape[0] - c + 1, (1,), generator=generator))
                left = int(torch.randint(0, lq.shape[1] - c + 1, (1,), generator=generator))
                lq = lq[top : top + c, left : left + c]
                gt = gt[top * scale : (top + c) * scale, left * scale : (left + c) * scale]
        lq_t, gt_t = to_tensor(lq) / 65535.0, to_tensor(gt) / 65535.0
        if self.packed:
            lq_t = (lq_t * pair.ratio).clamp(max=1.0)
        if self.crop is not None:
            lq_t, gt_t = random_hflip(
                generator, *random_crop_pair(lq_t, gt_t, self.crop, generator)
            )
        return PairBatch(
            lq_t,
            gt_t,
            scalar_vector({"exposure_ratio": pair.ratio / self.max_ratio}, self.aux_scalars),
        )

    def _aligned(
        self, lq: np.ndarray, gt: np.ndarray, pair: SIDPair
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trim both; packed: cut `gt` to exactly twice the size of `lq` (top-left aligned)."""
        t = self.trim
        if self.packed:
            h = min(lq.shape[0], gt.shape[0] // 2) - 2 * t
            w = min(lq.shape[1], gt.shape[1] // 2) - 2 * t
        elif lq.shape != gt.shape:
            raise ValueError(
                f"{pair.where}: pair sizes differ: {pair.short.name} renders to "
                f"{lq.shape[1]}x{lq.shape[0]}, {pair.long.name} to {gt.shape[1]}x{gt.shape[0]}"
            )
        else:
            h, w = lq.shape[0] - 2 * t, lq.shape[1] - 2 * t
        if h < 1 or w < 1:
            raise ValueError(f"data.trim={t} leaves nothing of {pair.short.name}")
        s = 2 if self.packed else 1
        return lq[t : t + h, t : t + w], gt[s * t : s * (t + h), s * t : s * (t + w)]


class SIDDataModule(PairDataModule):
    """SID Sony low-light pairs rendered from real raw files (paper: 2120×1416, ratio ≤ 300).

    ``root`` holds the list files and the raw files they name (the SID download:
    ``Sony_{train,val,test}_list.txt`` beside ``Sony/{short,long}/*.ARW``). Every raw file is
    decoded once into ``cache_dir`` (see `ucdir.data.sid_cache`) by `prepare_data` or by
    ``python -m ucdir.prepare task=sid``.

    - ``input=rgb`` (default, the paper): `lq` is the input amplified in the raw domain and
      rendered half size like the target; both (3, H, W), trimmed by `trim` px per side.
    - ``input=packed``: `lq` is the packed Bayer input (`ucdir.data.raw.CHANNELS` order: R, Gr,
      B, Gb whatever the camera's pattern), black-subtracted, amplified and clipped, at half the
      size of a full-size target (the original SID protocol, for the predictor's raw variant);
      horizontal flips mirror the packed planes as SID's code does.

    Training: random `crop`² crops of `gt` (`crop / 2` of a packed `lq`) and horizontal flips
    from the train list; validation: the val list; test: the test list; evaluation uses whole
    images, batch 1.

    Args:
        root: SID folder (``data.root``).
        cache_dir: decoded cache folder (``data.cache_dir``).
        input: ``rgb`` or ``packed`` (see above).
        crop: training crop side of the target in px (even when packed).
        trim: px dropped per side (of the half-size grid; twice that on a full-size target).
        max_ratio: exposure-ratio cap (SID: 300); the scalar ``exposure_ratio`` = ratio / cap.
        train_list, val_list, test_list: list files relative to `root` (test may be null).
        loader: the loader settings (`PairDataModule`); `num_workers` also sets the decoding
            processes of `prepare_data`; the check loads the header of every decoded training
            file (memory-mapped). A cache file that passes it is read, not decoded, during
            training, so `on_error` acts on the check's findings only; crops_per_image must be 1.
    """

    task = "sid"

    def __init__(
        self,
        root: str,
        cache_dir: str,
        input: InputKind = "rgb",
        crop: int = 256,
        trim: int = 4,
        max_ratio: float = 300.0,
        train_list: str = "Sony_train_list.txt",
        val_list: str = "Sony_val_list.txt",
        test_list: str | None = "Sony_test_list.txt",
        **loader: Any,
    ) -> None:
        super().__init__(scalar_names=("exposure_ratio",), **loader)
        if self.crops_per_image != 1:
            raise ValueError(
                "data.crops_per_image must be 1 for task sid (a crop reads only its window of "
                "the decoded cache, so one read gives one crop)"
            )
        if input not in ("rgb", "packed"):
            raise ValueError(f"data.input must be 'rgb' or 'packed', got {input!r}")
        if crop < 1 or (input == "packed" and crop % 2):
            raise ValueError(f"data.crop must be positive (and even when packed), got {crop!r}")
        if trim < 0:
            raise ValueError(f"data.trim must be >= 0, got {trim!r}")
        if max_ratio <= 0:
            raise ValueError(f"data.max_ratio must be positive, got {max_ratio!r}")
        self.root, self.cache_dir, self.input = root, cache_dir, input
        self.crop, self.trim, self.max_ratio = crop, trim, max_ratio
        self.lists = {"train": train_list, "val": val_list, "test": test_list}

    def pairs(self, split: str) -> list[SIDPair]:
        """The pairs of `split` (``train``, ``val`` or ``test``) from its list file."""
        name = self.lists[split]
        if name is None:
            raise ValueError(f"data.{split}_list is null: task sid has no {split} split")
        root = existing_dir(self.root, "data.root")
        return read_pairs(root / name, root, f"data.{split}_list", self.max_ratio)

    def pair_jobs(self, pair: SIDPair) -> tuple[CacheJob, CacheJob]:
        """The cache jobs (input, target) of one pair for this `input` mode."""
        root, cache = Path(self.root), Path(self.cache_dir)

        def job(path: Path, mode: CacheKind, ratio: float) -> CacheJob:
            return CacheJob(
                path, cache_target(cache, root, path, mode, ratio), mode, ratio, pair.where
            )

        if self.input == "rgb":  # both half-size renders, the input amplified by the ratio
            return job(pair.short, "half", pair.ratio), job(pair.long, "half", 1.0)
        # packed input (amplified when loaded) and a full-size target
        return job(pair.short, "packed", 1.0), job(pair.long, "full", 1.0)

    def cache_jobs(self, splits: Sequence[str] | None = None) -> list[CacheJob]:
        """The decoding jobs whose cache file is missing, for `splits` (default: all listed).

        Raises:
            FileNotFoundError: a list or a raw file it names (that still needs decoding) is missing.
        """
        chosen = splits if splits is not None else [s for s, name in self.lists.items() if name]
        jobs: dict[Path, CacheJob] = {}
        for split in chosen:
            for pair in self.pairs(split):
                for job in self.pair_jobs(pair):
                    if job.target not in jobs and not job.target.is_file():
                        existing_file(job.source, job.where)
                        jobs[job.target] = job
        return list(jobs.values())

    def prepare_data(self) -> None:
        """Decode every raw file that is not cached yet (once, on one process per node)."""
        jobs = self.cache_jobs()
        if jobs:
            log.info(
                "decoding %d raw files into %s with %d processes (`python -m ucdir.prepare "
                "task=sid` does this ahead of training, with a progress bar)",
                len(jobs),
                self.cache_dir,
                max(self.num_workers, 1),
            )
            build_cache(jobs, workers=self.num_workers)

    def build(self, stage: str, rank: int) -> None:
        if stage == "fit":
            self.data_train = self._dataset("train", self.crop, rank)
        if stage in ("fit", "validate"):
            self.data_val = self._dataset("val", None, rank)
        if stage in ("test", "predict"):
            self.data_test = self._dataset("test", None, rank)

    def _dataset(
        self, split: str, crop: int | None, rank: int, pairs: list[SIDPair] | None = None
    ) -> SIDDataset:
        pairs = self.pairs(split) if pairs is None else pairs
        jobs = [self.pair_jobs(pair) for pair in pairs]
        missing = [job.target for both in jobs for job in both if not job.target.is_file()]
        if missing:
            raise FileNotFoundError(
                f"data.cache_dir: {len(missing)} decoded files of the {split} split are missing "
                f"from {self.cache_dir} (first: {missing[0]}); run `python -m ucdir.prepare "
                f"task=sid data.root={self.root} task.input={self.input}` first"
            )
        files = [(lq.target, gt.target) for lq, gt in jobs]
        return SIDDataset(
            pairs,
            files,
            self.input == "packed",
            self.trim,
            crop,
            self.max_ratio,
            self.aux_scalars,
            rank,
        )
