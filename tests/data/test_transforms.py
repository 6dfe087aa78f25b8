import numpy as np
import pytest
import torch
from PIL import Image

from ucdir.data.seeding import sample_generator
from ucdir.data.transforms import (
    center_square,
    fit_short_side,
    pad_to,
    random_crop,
    random_crop_pair,
    random_hflip,
)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (3, 2), (7, 40)])
def test_pad_to_reaches_any_size_by_reflection(size: tuple[int, int]) -> None:
    x = torch.rand(3, *size)
    out = pad_to(x, 32, 32)
    assert out.shape == (3, max(32, size[0]), max(32, size[1]))
    assert torch.equal(out[:, : size[0], : size[1]], x)  # the image itself is untouched


def test_random_crop_pair_stays_aligned_for_rgb_and_packed() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 40, 60).expand(3, -1, -1)
    lq, crop = random_crop_pair(gt.clone(), gt, 16, gen)
    assert torch.equal(lq, crop) and crop.shape == (3, 16, 16)
    packed = gt[:1, ::2, ::2].expand(4, -1, -1)  # (4, 20, 30): pixel (i, j) <-> gt (2i, 2j)
    lq, crop = random_crop_pair(packed, gt, 16, gen)
    assert lq.shape == (4, 8, 8) and crop.shape == (3, 16, 16)
    assert torch.equal(lq[0], crop[0, ::2, ::2])
    with pytest.raises(ValueError, match="pair sizes differ"):
        random_crop_pair(torch.rand(3, 10, 10), torch.rand(3, 10, 11), 4, gen)


def test_small_images_are_padded_or_resized_not_retried() -> None:
    gen = torch.Generator().manual_seed(0)
    lq, gt = random_crop_pair(torch.rand(3, 10, 12), torch.rand(3, 10, 12), 32, gen)
    assert lq.shape == gt.shape == (3, 32, 32)
    assert random_crop(torch.rand(3, 10, 20), 32, gen).shape == (3, 32, 32)
    assert fit_short_side(torch.rand(3, 10, 20), 32).shape == (3, 32, 64)


def ddrm_by_hand(x: torch.Tensor, size: int) -> torch.Tensor:
    """DDRM's ImageNet protocol with Pillow: the centred square of side min(H, W) (torchvision's
    `center_crop` offsets, round((H − side) / 2)), then Pillow's bilinear resize to size² (what
    `transforms.Resize(size)` does to a square PIL image), on float32 channels (no 8-bit
    rounding)."""
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = round((h - side) / 2.0), round((w - side) / 2.0)
    channels = []
    for channel in x.numpy():
        im = Image.fromarray(channel.astype(np.float32), mode="F")
        im = im.crop((left, top, left + side, top + side))
        channels.append(np.asarray(im.resize((size, size), Image.Resampling.BILINEAR)))
    return torch.from_numpy(np.stack(channels)).clamp(0, 1)


@pytest.mark.parametrize(
    "height,width",
    [
        (300, 400),  # landscape, downscaled (antialiased)
        (400, 300),  # portrait
        (200, 300),  # upscaled
        (375, 500),  # an ImageNet validation size: odd margin (62.5 rounds to 62)
        (256, 256),  # already the size: unchanged
        (301, 404),  # odd margin 103: torchvision rounds 51.5 half to even, 52
    ],
)
def test_center_square_is_ddrm_protocol(height: int, width: int) -> None:
    x = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height + width))
    out = center_square(x, 256)
    assert out.shape == (3, 256, 256)
    torch.testing.assert_close(out, ddrm_by_hand(x, 256), atol=1e-5, rtol=0)
    if (height, width) == (256, 256):
        assert torch.equal(out, x)


def test_hflip_flips_all_images_together() -> None:
    a, b = torch.rand(3, 4, 5), torch.rand(4, 4, 5)
    for seed in range(8):
        fa, fb = random_hflip(torch.Generator().manual_seed(seed), a, b)
        assert torch.equal(fa, a) == torch.equal(fb, b)
        assert torch.equal(fa, a) or torch.equal(fa, a.flip(-1))


def test_sample_generator_is_fixed_for_evaluation_and_fresh_for_training() -> None:
    draw = lambda g: torch.rand(3, generator=g)  # noqa: E731
    assert torch.equal(draw(sample_generator(5, 0)), draw(sample_generator(5, 0)))
    assert not torch.equal(draw(sample_generator(5, 0)), draw(sample_generator(6, 0)))
    torch.manual_seed(1)
    first = draw(sample_generator(5, None, rank=0))
    torch.manual_seed(1)
    assert torch.equal(first, draw(sample_generator(5, None, rank=0)))  # seeded run: reproducible
    torch.manual_seed(1)
    assert not torch.equal(first, draw(sample_generator(5, None, rank=1)))  # ranks differ
