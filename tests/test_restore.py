import itertools

import pytest
import torch

from tests.diffusion.helpers import load_sampler, oracle
from ucdir.diffusion.fidelity import gaussian_lowpass
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.restore import restore

TINY = dict(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def test_guidance_moves_the_result_toward_x_init_monotonically() -> None:
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, 48, 64, generator=g) * 0.6 + 0.2
    # a residual with coarse and fine content; the toy eps predictor knows it exactly
    r0 = 0.5 * gaussian_lowpass(torch.randn(1, 3, 48, 64, generator=g), 6.0) * 4
    r0 = (r0 + 0.1 * torch.randn(1, 3, 48, 64, generator=g)).clamp(-0.9, 0.9)
    eps_fn = oracle(r0)
    sampler = load_sampler("ddpm", steps=20)
    scores = []
    for scale in (0.0, 0.5, 1.0, 2.0, 5.0, 20.0):
        out = restore(
            lq,
            torch.nn.Identity(),
            eps_fn,
            sampler,
            None,
            torch.Generator().manual_seed(1),
            guidance=scale,
        )
        scores.append(psnr(out.restored, out.x_init))
    assert all(b > a for a, b in itertools.pairwise(scores)), scores
    with pytest.raises(ValueError, match="guidance"):
        restore(lq, torch.nn.Identity(), eps_fn, sampler, guidance=-1.0)


def test_restore_returns_images_in_range_and_sample_statistics() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY).eval()
    lq = torch.rand(2, 3, 21, 35)
    out = restore(
        lq,
        InitialPredictor().eval(),
        net,
        load_sampler("ddim", steps=3),
        None,
        torch.Generator().manual_seed(0),
        num_samples=3,
    )
    for t in (out.restored, out.x_init, out.mean, out.std):
        assert t is not None and t.shape == lq.shape
    assert float(out.restored.min()) >= 0 and float(out.restored.max()) <= 1
    assert float(out.std.mean()) > 0  # type: ignore[union-attr]
    one = restore(lq, InitialPredictor().eval(), net, load_sampler("ddim", steps=3))
    assert one.mean is None and one.std is None


def test_same_generator_same_restoration() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY).eval()
    lq = torch.rand(1, 3, 30, 30)
    runs = [
        restore(
            lq,
            torch.nn.Identity(),
            net,
            load_sampler("ddpm", steps=4),
            None,
            torch.Generator().manual_seed(7),
        ).restored
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


def test_regression_and_packed_raw_paths() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY, lq_channels=4).eval()
    lq = torch.rand(1, 4, 20, 26)
    out = restore(lq, InitialPredictor(in_channels=4).eval(), net, load_sampler("regression"))
    assert out.restored.shape == (1, 3, 40, 52)


def test_scalars_reach_the_network() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY, aux_scalars=("quality",)).eval()
    lq = torch.rand(1, 3, 16, 16)
    a, b = (
        restore(
            lq, torch.nn.Identity(), net, load_sampler("regression"), scalars=torch.tensor([[q]])
        ).restored
        for q in (0.1, 0.9)
    )
    assert (a - b).abs().max() > 1e-5
