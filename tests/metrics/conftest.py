"""Metric tests run with empty weight caches unless a test asks for the real one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REAL_HUB_DIR = Path(torch.hub.get_dir())


@pytest.fixture(autouse=True)
def _empty_weight_caches(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points torch hub (and so every standard weights cache) at an empty folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.delenv("UCDIR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no set_dir() override either


def random_images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(b, 3, h, w) uniform images in [0, 1], reproducible."""
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))
