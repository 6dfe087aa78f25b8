"""The metric networks with pretrained weights, built offline from local files.

Each builder looks its weights file up with `find_weights` (raising `MissingWeightsError`, which
names the file, its source and where to put it) and never lets a library download anything.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ucdir.metrics.weights import (
    ALEXNET,
    INCEPTION,
    PYIQA_NIQE,
    CorruptWeightsError,
    MetricUnavailableError,
    MissingWeightsError,
    WeightsFile,
    find_weights,
)

TORCH_FIDELITY_REQUIREMENT = "torch-fidelity>=0.3"


def _load_state(path: Path, file: WeightsFile) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse the file: pickle, zip, EOF, index errors
        raise CorruptWeightsError(path, file, err) from err
    if not isinstance(state, dict):
        raise CorruptWeightsError(path, file, TypeError("it does not hold a state dict"))
    return state


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone (`lpips` package) on images in [0, 1].

    Inputs are mapped to [−1, 1] as LPIPS expects; one score per image (spatial average).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, restored: Tensor, gt: Tensor) -> Tensor:
        """(B, 3, H, W) x2 in [0, 1] -> (B,) LPIPS distance."""
        return self.net(restored * 2 - 1, gt * 2 - 1).flatten()


def build_lpips() -> LPIPSAlex:
    """LPIPS-Alex from local files: the linear layers ship in the `lpips` wheel, the AlexNet
    backbone is torchvision's ImageNet file (`alexnet-owt-7be5be79.pth`).

    Raises:
        MissingWeightsError: if the AlexNet file is not found.
    """
    path = find_weights(ALEXNET)
    import lpips

    with warnings.catch_warnings():
        # lpips builds its trunk with torchvision's deprecated `pretrained=` flag.
        warnings.simplefilter("ignore", UserWarning)
        # pnet_rand=True: a randomly initialised trunk, so torchvision downloads nothing.
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    alexnet = _load_state(path, ALEXNET)
    # lpips splits torchvision's `features` Sequential into slices that keep its layer indices.
    try:
        trunk = {k: alexnet[f"features.{k.split('.', 1)[1]}"] for k in net.net.state_dict()}
        net.net.load_state_dict(trunk)
    except (KeyError, RuntimeError) as err:
        raise CorruptWeightsError(path, ALEXNET, err) from err
    return LPIPSAlex(net).eval().requires_grad_(False)


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
    from pyiqa.archs.niqe_arch import NIQE

    return PyiqaNIQE(NIQE(pretrained_model_path=str(path))).eval()
