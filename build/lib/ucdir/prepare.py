"""`python -m ucdir.prepare task=sid data.root=/path/SID`: decode raw files once into the cache.

Decodes every raw file named by the task's list files (or only `splits`) into ``data.cache_dir``
in `workers` parallel processes, with a progress bar; cached files are skipped, so an interrupted
run resumes. Only tasks whose DataModule keeps a decoded cache (sid) need this step.
"""

from __future__ import annotations

import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from ucdir.config_files import CONFIG_DIR
from ucdir.data.sid import SIDDataModule
from ucdir.data.sid_cache import build_cache

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> int:
    """Fill the decoded cache of the configured task; returns the number of files decoded."""
    datamodule = instantiate(cfg.data)
    if not isinstance(datamodule, SIDDataModule):
        raise ValueError(
            f"task={cfg.task.name} reads its images directly and needs no prepare step "
            "(only task=sid keeps a decoded cache)"
        )
    splits = list(cfg.splits) if cfg.splits is not None else None
    jobs = datamodule.cache_jobs(splits)
    log.info("%d raw files to decode into %s", len(jobs), datamodule.cache_dir)
    if jobs:
        with tqdm(total=len(jobs), unit="file", desc="decoding") as bar:
            build_cache(jobs, workers=int(cfg.workers), on_done=lambda job: bar.update())
    return len(jobs)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
