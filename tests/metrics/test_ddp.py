"""`Metrics` under DDP (2 CPU processes, gloo): the same values as one process that saw it all."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ucdir.metrics import Metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _score(rank: int, world: int, port: int, out: dict) -> None:
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    # 16² patches and a flattening "feature network": FID/KID over 288 patches, KID subsets of 50
    metrics = Metrics(
        ["psnr", "niqe", "fid", "kid"],
        patch_size=16,
        kid_subset_size=50,
        feature=torch.nn.Flatten(),
    )
    images = torch.rand(3, 3, 128, 200, generator=torch.Generator().manual_seed(0))
    for i in range(rank, 3, world):  # process 0: images 0 and 2, process 1: image 1
        metrics.update(images[i : i + 1] * 0.8, images[i : i + 1], names=[f"{i:05d}"])
    result = metrics.compute()
    out[rank] = (result.aggregate, [r["name"] for r in result.per_image])
    if world > 1:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)  # a collective mismatch would hang, not fail
def test_two_processes_give_the_values_of_one() -> None:
    manager = mp.Manager()
    single, pair = manager.dict(), manager.dict()
    _score(0, 1, 0, single)
    mp.spawn(_score, args=(2, _free_port(), pair), nprocs=2)
    one, names = single[0]
    assert names == ["00000", "00001", "00002"] and one["patches"] == 288
    for rank in (0, 1):
        values, rank_names = pair[rank]
        assert rank_names == names
        assert values.keys() == one.keys()
        for key, value in one.items():
            assert values[key] == pytest.approx(value, rel=1e-5), (rank, key)
