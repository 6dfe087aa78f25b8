"""Results tables: Markdown and CSV files laid out like the paper's tables, and logger output.

A results row is a dict with `method` and the aggregate values of `MetricsResult.aggregate`
(`lpips`, `niqe`, `fid`, `kid` (×10³), `psnr`, `ssim`, ...); a metric that was not computed is
absent and shows as an empty cell. The columns (titles, directions, decimals) are the metric
table's, `ucdir.metrics.specs.METRICS`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ucdir.atomic import write_text_atomic
from ucdir.metrics.collection import MetricsResult
from ucdir.metrics.fidelity import PSNR_CAP
from ucdir.metrics.specs import METRICS, PAPER_METRICS


class Column(NamedTuple):
    """A results column: the row key, its CSV title, its Markdown heading, decimals shown."""

    key: str
    title: str
    header: str
    decimals: int


SECONDS = Column("seconds", "seconds", "s/image ↓", 2)
_COUNTS = (("images", "images"), ("patches", "patches"))

Row = Mapping[str, Any]


def columns() -> list[Column]:
    """Every metric's column (from `METRICS`, in its order), then the time per image."""
    specs = METRICS.values()
    return [*(Column(s.name, s.title, s.header, s.decimals) for s in specs), SECONDS]


def results_row(method: str, result: MetricsResult) -> dict[str, Any]:
    """One table row: the method's name, its aggregate values and the image/patch counts."""
    counts = {
        k: int(result.aggregate[k])
        for k in (*(k for k, _ in _COUNTS), "identical")
        if k in result.aggregate
    }
    return {"method": method, **result.aggregate, **counts}


def _columns(rows: Sequence[Row]) -> list[Column]:
    """The paper's columns always (so tables of different runs line up), extras when present."""
    return [c for c in columns() if c.key in PAPER_METRICS or any(c.key in r for r in rows)]


def _fmt(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{decimals}f}"


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table (one line per row), ending with a newline."""
    cols = _columns(rows)
    header = ["Method", *(c.header for c in cols), "Images"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        cells = [str(r["method"]), *(_fmt(r.get(c.key), c.decimals) for c in cols)]
        cells.append(str(int(r["images"])) if "images" in r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_text(header: Sequence[str], lines: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(lines)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return round(value, 6) if isinstance(value, float) else value


def results_csv(rows: Sequence[Row]) -> str:
    """One line per method/run: `method`, LPIPS, NIQE, FID, KID, PSNR, SSIM (+ extras), counts."""
    cols = _columns(rows)
    header = ["method", *(c.title for c in cols), *(c[1] for c in _COUNTS)]
    keys = ["method", *(c.key for c in cols), *(c[0] for c in _COUNTS)]
    return _csv_text(header, [[_cell(r.get(k)) for k in keys] for r in rows])


def per_image_csv(per_image: Sequence[Row]) -> str:
    """One line per image: `name` and each per-image metric."""
    cols = [c for c in columns() if any(c.key in r for r in per_image)]
    header = ["name", *(c.title for c in cols)]
    keys = ["name", *(c.key for c in cols)]
    return _csv_text(header, [[_cell(r.get(k)) for k in keys] for r in per_image])


def results_markdown(rows: Sequence[Row], protocol: Mapping[str, Any]) -> str:
    """The Markdown table, followed by a note for each metric under `protocol["skipped"]`."""
    by_reason: dict[str, list[str]] = {}
    for name, why in (protocol.get("skipped") or {}).items():
        by_reason.setdefault(why, []).append(name)
    notes = "".join(f"- **{', '.join(n)}** not computed: {why}\n" for why, n in by_reason.items())
    for r in rows:
        if r.get("identical"):
            notes += (
                f"- **{r['method']}**: {int(r['identical'])} image(s) identical to the ground "
                f"truth, their PSNR counted as {PSNR_CAP:g} dB (not inf)\n"
            )
    return markdown_table(rows) + ("\n" + notes if notes else "")


def _json_row(row: Row) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a `results.json` written by `write_results`."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path} does not hold a list of results rows")
    return rows


def write_results(
    rows: Sequence[Row],
    out_dir: str | Path,
    protocol: Mapping[str, Any],
    per_image: Sequence[Row] | None = None,
) -> dict[str, Path]:
    """Writes `results.md`, `results.csv`, `results.json` (the rows as given, NaN as null),
    `protocol.json` and (given rows) `per_image.csv`.

    Every file is written atomically (temporary file, then rename). Metrics listed under
    `protocol["skipped"]` are explained below the Markdown table.

    Returns:
        The written paths by file name.

    Raises:
        ValueError: a row or the protocol holds an infinite value (JSON has none).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "results.md": results_markdown(rows, protocol),
        "results.csv": results_csv(rows),
        # allow_nan=False: a non-finite value that slips through raises, never invalid JSON
        "protocol.json": json.dumps(protocol, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
    }
    texts["results.json"] = (
        json.dumps([_json_row(r) for r in rows], indent=2, allow_nan=False) + "\n"
    )
    if per_image is not None:
        texts["per_image.csv"] = per_image_csv(per_image)
    for name, text in texts.items():
        write_text_atomic(out / name, text)
    return {name: out / name for name in texts}


def log_results_table(logger: Any, rows: Sequence[Row], key: str = "results") -> None:
    """Logs the results to a Lightning logger.

    A `WandbLogger` gets a `wandb.Table` under `key` (columns as in `results.csv`); any other logger
    gets the scalars, `{key}/{metric}` for one row or `{key}/{method}/{metric}` for several.
    """
    from lightning.pytorch.loggers import WandbLogger

    cols = _columns(rows)
    if isinstance(logger, WandbLogger):
        titles = ["method", *(c.title for c in cols), *(c[1] for c in _COUNTS)]
        keys = ["method", *(c.key for c in cols), *(c[0] for c in _COUNTS)]
        logger.log_table(key=key, columns=titles, data=[[r.get(k) for k in keys] for r in rows])
        return
    scalars: dict[str, float] = {}
    for r in rows:
        prefix = key if len(rows) == 1 else f"{key}/{r['method']}"
        for k, v in r.items():
            if k != "method" and isinstance(v, int | float) and not math.isnan(v):
                scalars[f"{prefix}/{k}"] = float(v)
    logger.log_metrics(scalars)
    logger.save()
