"""Results tables: files, Markdown, and logging to Lightning loggers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from ucdir.metrics import MetricsResult, log_results_table, markdown_table, results_row
from ucdir.metrics.results import read_results, results_markdown, write_results

RESULT = MetricsResult(
    aggregate={"images": 2.0, "psnr": 24.5785, "ssim": 0.76911, "niqe": 6.1292, "patches": 20.0},
    per_image=[
        {"name": "Flower1", "psnr": 25.107, "ssim": 0.82, "niqe": 4.63},
        {"name": "Istanbul1", "psnr": 24.05, "ssim": 0.71, "niqe": 7.62},
    ],
    skipped={"fid": "missing weights file 'x.pth'", "kid": "missing weights file 'x.pth'"},
)
PROTOCOL = {"metrics": {"psnr": {"color_space": "RGB"}}, "skipped": RESULT.skipped}


def test_markdown_table_has_the_paper_columns() -> None:
    rows = [results_row("blur", RESULT), {"method": "ours", "psnr": 30.0, "lpips": 0.1}]
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0] == (
        "| Method | LPIPS ↓ | NIQE ↓ | FID ↓ | KID×10³ ↓ | PSNR ↑ | SSIM ↑ | Images |"
    )
    assert lines[2] == "| blur | – | 6.1292 | – | – | 24.58 | 0.7691 | 2 |"
    assert lines[3] == "| ours | 0.1000 | – | – | – | 30.00 | – | – |"
    notes = results_markdown(rows, PROTOCOL)
    assert notes.startswith(table)
    assert "**fid, kid** not computed: missing weights file 'x.pth'" in notes


def test_write_results_writes_every_file(tmp_path: Path) -> None:
    paths = write_results(
        [results_row("blur", RESULT)], tmp_path / "run", PROTOCOL, RESULT.per_image
    )
    assert sorted(paths) == [
        "per_image.csv",
        "protocol.json",
        "results.csv",
        "results.json",
        "results.md",
    ]
    assert read_results(paths["results.json"]) == [results_row("blur", RESULT)]
    with open(paths["results.csv"]) as f:
        (row,) = list(csv.DictReader(f))
    assert list(row)[:7] == ["method", "LPIPS", "NIQE", "FID", "KID", "PSNR", "SSIM"]
    assert row["method"] == "blur" and row["LPIPS"] == "" and row["images"] == "2"
    assert float(row["PSNR"]) == pytest.approx(24.5785)
    with open(paths["per_image.csv"]) as f:
        images = list(csv.DictReader(f))
    assert [r["name"] for r in images] == ["Flower1", "Istanbul1"]
    assert float(images[1]["PSNR"]) == pytest.approx(24.05)
    assert json.loads(paths["protocol.json"].read_text()) == PROTOCOL
    assert "fid, kid" in paths["results.md"].read_text()
    assert not list((tmp_path / "run").glob(".*tmp"))  # no temporary files left


def test_log_results_table_to_a_csv_logger(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="eval")
    log_results_table(logger, [results_row("blur", RESULT)])
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["results/psnr"]) == pytest.approx(24.5785)
    assert float(row["results/niqe"]) == pytest.approx(6.1292)


def test_log_results_table_to_wandb_as_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    try:
        log_results_table(logger, [results_row("blur", RESULT)])
    finally:
        wandb.finish()
    (table_file,) = tmp_path.glob("wandb/offline-run-*/files/media/table/results_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:7] == ["method", "LPIPS", "NIQE", "FID", "KID", "PSNR", "SSIM"]
    assert table["data"][0][0] == "blur"
    assert table["data"][0][5] == pytest.approx(24.5785)
