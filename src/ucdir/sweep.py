"""One table for a whole `ucdir.evaluate` multirun: a Hydra callback that gathers every job's
`results.json` when the sweep ends and writes `sweep_results.md` and `sweep_results.csv` (one row
per job and row kind, labelled with the job's overrides) into the sweep folder.

    python -m ucdir.evaluate -m ckpt_path=<run>/checkpoints/last.ckpt task=jpeg \\
        sampler=ddpm,dpmpp,unipc sampler.steps=5,10,20,50

gives the quality-per-step table of one checkpoint (metrics and seconds per image).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ucdir.atomic import write_text_atomic
from ucdir.metrics.results import markdown_table, read_results, results_csv

log = logging.getLogger(__name__)


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return [job_dir.name]
    import yaml

    return [str(o) for o in yaml.safe_load(path.read_text(encoding="utf-8")) or []]


def sweep_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of every job folder of a sweep, in job order, each labelled by the overrides
    that differ between the jobs (`<overrides>` for a job's first row, `<overrides> · <kind>`
    for the others, e.g. x_init). A later row equal to an earlier one of the same kind (x_init
    of the same checkpoint under another sampler) is left out."""
    root = Path(sweep_dir)
    jobs = sorted(
        (p for p in root.iterdir() if (p / "results.json").is_file()),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
    )
    overrides = {job: _overrides(job) for job in jobs}
    common = set.intersection(*(set(o) for o in overrides.values())) if jobs else set()
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for job in jobs:
        label = " ".join(o for o in overrides[job] if o not in common) or job.name
        for i, row in enumerate(read_results(job / "results.json")):
            kind = "" if i == 0 else str(row["method"]).rsplit(" ", 1)[-1]
            values = {k: v for k, v in row.items() if k != "method"}
            key = (kind, repr(sorted(values.items())))
            if kind and key in seen:
                continue
            seen.add(key)
            rows.append({**row, "method": f"{label} · {kind}" if kind else label})
    return rows


def write_sweep_table(sweep_dir: str | Path) -> str:
    """Writes `sweep_results.md` and `sweep_results.csv` into `sweep_dir`; returns the Markdown."""
    root = Path(sweep_dir)
    rows = sweep_rows(root)
    if not rows:
        raise ValueError(f"no job of the sweep in {root} wrote a results.json")
    text = markdown_table(rows)
    write_text_atomic(root / "sweep_results.md", text)
    write_text_atomic(root / "sweep_results.csv", results_csv(rows))
    return text


class SweepTable(Callback):
    """Hydra callback (`hydra.callbacks` in `configs/eval.yaml`): the combined table at the end of
    a multirun, printed on stdout and written into the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            log.warning("sweep folder %s not found: no combined table written", sweep_dir)
            return
        try:
            text = write_sweep_table(sweep_dir)
        except ValueError as err:
            log.warning("%s", err)
            return
        sys.stdout.write("\n" + text)
        log.info("combined table of the sweep written to %s", sweep_dir / "sweep_results.md")
