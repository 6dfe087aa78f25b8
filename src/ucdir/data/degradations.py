"""The blind task's second-order degradation model (Real-ESRGAN, as adopted by DiffBIR).

Each stage is blur → resize → noise → JPEG; the second stage repeats it with milder ranges, and
the image is finally resized back to its input size (no super-resolution factor: DESIGN §4) with
a sinc filter, the final resize and the last JPEG in random order. Every random choice comes from
the sample's `torch.Generator`, so a validation set is fixed by its seed. kornia does the
filtering, resizing and colour conversion; Pillow (libjpeg) the JPEG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import kornia
import torch
from torch import Tensor

from ucdir.data.compression import jpeg_roundtrip
from ucdir.data.kernels import KernelShape, gaussian_family_kernel, sinc_kernel

ResizeMode = Literal["area", "bilinear", "bicubic"]
KERNEL_KINDS: tuple[tuple[KernelShape, bool], ...] = (
    ("gaussian", True),
    ("gaussian", False),
    ("generalized", True),
    ("generalized", False),
    ("plateau", True),
    ("plateau", False),
)
"""(shape, isotropic) of each entry of `DegradationStage.kernel_probs`."""


def _tuples(obj: object) -> None:
    """Store list fields (as Hydra passes YAML lists) as tuples, so the dataclass stays hashable."""
    for name, value in vars(obj).items():
        if isinstance(value, list):
            object.__setattr__(obj, name, tuple(value))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _chance(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator, dtype=torch.float64)) < p


def _pick(generator: torch.Generator, probs: tuple[float, ...]) -> int:
    weights = torch.tensor(probs, dtype=torch.float64)
    return int(torch.multinomial(weights, 1, generator=generator))


def _odd_size(generator: torch.Generator, sizes: tuple[int, int]) -> int:
    low, high = sizes[0] | 1, sizes[1]
    return low + 2 * int(torch.randint(0, (high - low) // 2 + 1, (1,), generator=generator))


@dataclass(frozen=True)
class DegradationStage:
    """Sampling ranges of one blur → resize → noise → JPEG round (Real-ESRGAN's first order).

    Attributes:
        blur_prob: probability to blur at all (Real-ESRGAN: 1 in the first stage, 0.8 in the
            second), drawn from the sample's generator like every other choice.
        kernel_sizes: (min, max) odd kernel size, drawn uniformly among the odd sizes.
        kernel_probs: probabilities of isotropic / anisotropic Gaussian, generalised Gaussian
            and plateau kernels, in `KERNEL_KINDS` order.
        sigma: (min, max) kernel standard deviation in px (each axis).
        betag, betap: (min, max) shape exponent of generalised Gaussian and plateau kernels
            (drawn below or above 1 with equal chance).
        sinc_prob: probability that the kernel is a sinc instead (cutoff in [π/3, π], or
            [π/5, π] for kernels of 13 px or more).
        resize_probs: probabilities to scale up, down or keep.
        resize_range: (min, max) scale factor, relative to the stage input (first stage) or to
            the original size (second stage).
        gaussian_noise_prob: probability of Gaussian rather than Poisson noise.
        noise_range: (min, max) Gaussian sigma on the 0–255 scale.
        poisson_scale_range: (min, max) scale of the Poisson (shot) noise.
        gray_noise_prob: probability that the noise is the same in all channels.
        jpeg_range: (min, max) JPEG quality.
    """

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, int] = (7, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        _tuples(self)
        if len(self.kernel_probs) != len(KERNEL_KINDS):
            raise ValueError(
                f"kernel_probs needs {len(KERNEL_KINDS)} entries, got {list(self.kernel_probs)}"
            )
        for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if not 1 <= self.kernel_sizes[0] <= self.kernel_sizes[1]:
            raise ValueError(f"kernel_sizes must be (min, max) >= 1, got {self.kernel_sizes}")
        if not 0 < self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"sigma must be (min, max) > 0, got {self.sigma}")
        if not 1 <= self.jpeg_range[0] <= self.jpeg_range[1] <= 100:
            raise ValueError(f"jpeg_range must lie in [1, 100], got {self.jpeg_range}")
        if not 0 < self.resize_range[0] <= 1 <= self.resize_range[1]:
            raise ValueError(
                f"resize_range must satisfy 0 < min <= 1 <= max, got {self.resize_range}"
            )

    def kernel(self, generator: torch.Generator) -> tuple[Tensor, float]:
        """A random blur kernel and its mean sigma (0 for a sinc kernel)."""
        size = _odd_size(generator, self.kernel_sizes)
        if _chance(generator, self.sinc_prob):
            low = math.pi / 3 if size < 13 else math.pi / 5
            return sinc_kernel(size, _uniform(generator, low, math.pi)), 0.0
        shape, isotropic = KERNEL_KINDS[_pick(generator, self.kernel_probs)]
        sigma_x = _uniform(generator, *self.sigma)
        sigma_y = sigma_x if isotropic else _uniform(generator, *self.sigma)
        theta = 0.0 if isotropic else _uniform(generator, -math.pi, math.pi)
        beta = 1.0
        if shape != "gaussian":
            low, high = self.betag if shape == "generalized" else self.betap
            beta = (
                _uniform(generator, low, 1.0)
                if _chance(generator, 0.5)
                else _uniform(generator, 1.0, high)
            )
        return gaussian_family_kernel(size, sigma_x, sigma_y, theta, shape, beta), (
            sigma_x + sigma_y
        ) / 2

    def blur(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, float]:
        """`x` (1, C, H, W) blurred by a random kernel with probability `blur_prob`, else `x`
        itself; returns it and the kernel's mean sigma (0 for a sinc kernel or no blur)."""
        if not _chance(generator, self.blur_prob):
            return x, 0.0
        kernel, sigma = self.kernel(generator)
        return _blur(x, kernel), sigma

    def scale(self, generator: torch.Generator) -> float:
        """A random resize factor (up, down or 1)."""
        direction = _pick(generator, self.resize_probs)
        if direction == 0:
            return _uniform(generator, 1.0, self.resize_range[1])
        if direction == 1:
            return _uniform(generator, self.resize_range[0], 1.0)
        return 1.0

    def noise(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, float]:
        """`x` plus Gaussian or Poisson noise; returns it and the Gaussian sigma / 255 (or 0)."""
        gray = _chance(generator, self.gray_noise_prob)
        if _chance(generator, self.gaussian_noise_prob):
            sigma = _uniform(generator, *self.noise_range) / 255
            shape = (x.shape[0], 1 if gray else x.shape[1], *x.shape[2:])
            return x + sigma * torch.randn(shape, generator=generator), sigma
        scale = _uniform(generator, *self.poisson_scale_range)
        clean = x.clamp(0, 1)
        if gray:
            clean = kornia.color.rgb_to_grayscale(clean)
        # Shot noise at the image's own number of grey levels (a power of two).
        levels = len(torch.unique((clean * 255).round()))
        levels = 2 ** math.ceil(math.log2(max(levels, 2)))
        noisy = torch.poisson(clean * levels, generator=generator) / levels
        return x + (noisy - clean) * scale, 0.0

    def quality(self, generator: torch.Generator) -> int:
        """A random JPEG quality in `jpeg_range`."""
        low, high = self.jpeg_range
        return int(torch.randint(low, high + 1, (1,), generator=generator))


def _second_stage() -> DegradationStage:
    return DegradationStage(
        blur_prob=0.8,
        sigma=(0.2, 1.5),
        resize_probs=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )


@dataclass(frozen=True)
class SecondOrderDegradation:
    """Real-ESRGAN's second-order degradation at scale 1 (the defaults are Real-ESRGAN's).

    Scalars of the draw, for `aux_scalars`: ``blur_sigma`` (first-stage kernel sigma / its
    maximum; 0 for a sinc kernel or no first-stage blur), ``scale`` (first-stage resize factor /
    its maximum), ``noise_sigma`` (first-stage Gaussian sigma / 255; 0 for Poisson noise) and
    ``quality`` (the last JPEG quality / 100).

    Attributes:
        first: ranges of the first stage.
        second: ranges of the second stage (Real-ESRGAN's milder "2" options).
        final_sinc_prob: probability of the final sinc filter.
        resize_modes: interpolations drawn uniformly for every resize.
    """

    first: DegradationStage = field(default_factory=DegradationStage)
    second: DegradationStage = field(default_factory=_second_stage)
    final_sinc_prob: float = 0.8
    resize_modes: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")

    scalar_names: ClassVar[tuple[str, ...]] = ("blur_sigma", "scale", "noise_sigma", "quality")

    def __post_init__(self) -> None:
        _tuples(self)

    def __call__(self, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """Degrade a (3, H, W) image in [0, 1]; returns lq (3, H, W) in [0, 1] and the scalars."""
        height, width = gt.shape[-2:]
        x = gt[None].float()
        # First order.
        x, sigma = self.first.blur(x, generator)
        scale = self.first.scale(generator)
        x = self._resize(x, _scaled(x.shape[-2], scale), _scaled(x.shape[-1], scale), generator)
        x, noise_sigma = self.first.noise(x, generator)
        x = _jpeg(x, self.first.quality(generator))
        # Second order; its resize is relative to the original size.
        x = self.second.blur(x, generator)[0]
        scale2 = self.second.scale(generator)
        x = self._resize(x, _scaled(height, scale2), _scaled(width, scale2), generator)
        x = self.second.noise(x, generator)[0]
        # Back to the input size with a sinc filter, and the last JPEG, in random order.
        quality = self.second.quality(generator)
        final = sinc_kernel(
            _odd_size(generator, self.second.kernel_sizes),
            _uniform(generator, math.pi / 3, math.pi),
        )
        use_sinc = _chance(generator, self.final_sinc_prob)
        if _chance(generator, 0.5):
            x = self._resize(x, height, width, generator)
            x = _jpeg(_blur(x, final) if use_sinc else x, quality)
        else:
            x = self._resize(_jpeg(x, quality), height, width, generator)
            x = _blur(x, final) if use_sinc else x
        lq = ((x.clamp(0, 1) * 255).round() / 255)[0]
        scalars = {
            "blur_sigma": sigma / self.first.sigma[1],
            "scale": scale / self.first.resize_range[1],
            "noise_sigma": noise_sigma,
            "quality": quality / 100,
        }
        return lq, scalars

    def _resize(self, x: Tensor, height: int, width: int, generator: torch.Generator) -> Tensor:
        mode = self.resize_modes[_pick(generator, (1.0,) * len(self.resize_modes))]
        if (height, width) == tuple(x.shape[-2:]):
            return x
        return kornia.geometry.transform.resize(
            x, (height, width), interpolation=mode, antialias=False
        )


def _scaled(size: int, scale: float) -> int:
    return max(1, round(size * scale))


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve (1, C, H, W) with a (k, k) kernel; reflect borders (replicate on tiny images)."""
    half = kernel.shape[-1] // 2
    border = "reflect" if min(x.shape[-2:]) > half else "replicate"
    return kornia.filters.filter2d(x, kernel[None], border_type=border)


def _jpeg(x: Tensor, quality: int) -> Tensor:
    return jpeg_roundtrip(x[0], quality)[None]
