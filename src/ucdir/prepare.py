"""`python -m ucdir.prepare task=sid data.root=/path/SID`: decode raw files once into the cache.

Decodes every raw file named by the task's list files (or only `splits`) into ``data.cache_dir``
in `workers` parallel processes, with a progress bar; cached files are skipped, so an interrupted
run resumes. A file that cannot be decoded (or whose sensor claims more than `max_pixels`) is
reported at the end, after all the others. Only tasks whose DataModule keeps a decoded cache
(sid) need this step.
"""

from __future__ import annotations

import dataclasses
import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from ucdir.config_files import CONFIG_DIR
from ucdir.data.sid import SIDDataModule
from ucdir.data.sid_cache import build_cache
from ucdir.overrides import reports_user_errors, run_command

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> int:
    """Fill the decoded cache of the configured task; returns the number of files decoded.

    Raises:
        ValueError: after every other file was decoded, listing the files that could not be
            (unreadable, corrupt, or a sensor over `max_pixels`); a rerun decodes only those.
    """
    datamodule = instantiate(cfg.data)
    if not isinstance(datamodule, SIDDataModule):
        raise ValueError(
            f"task={cfg.task.name} reads its images directly and needs no prepare step "
            "(only task=sid keeps a decoded cache)"
        )
    splits = list(cfg.splits) if cfg.splits is not None else None
    max_pixels = int(cfg.max_pixels)
    jobs = [dataclasses.replace(j, max_pixels=max_pixels) for j in datamodule.cache_jobs(splits)]
    log.info("%d raw files to decode into %s", len(jobs), datamodule.cache_dir)
    if jobs:
        with tqdm(total=len(jobs), unit="file", desc="decoding") as bar:
            build_cache(jobs, workers=int(cfg.workers), on_done=lambda job: bar.update())
    return len(jobs)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
@reports_user_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    run_command(main)
