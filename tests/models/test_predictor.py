import pytest
import torch

from ucdir.models import InitialPredictor
from ucdir.stats import count_params


def test_parameter_count_matches_official() -> None:
    assert count_params(InitialPredictor()) == 7_760_163


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (5, 9), (64, 48)])
def test_rgb_any_size(size: tuple[int, int]) -> None:
    net = InitialPredictor()
    lq = torch.rand(2, 3, *size, requires_grad=True)
    out = net(lq)
    assert out.shape == (2, 3, *size) and out.dtype == torch.float32
    out.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_packed_raw_variant_upscales_to_rgb() -> None:
    net = InitialPredictor(in_channels=4)
    out = net(torch.rand(1, 4, 19, 27))
    assert out.shape == (1, 3, 38, 54)


def test_global_residual_starts_from_the_input() -> None:
    net = InitialPredictor(width=8, global_residual=True)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.zero_()
    lq = torch.rand(1, 3, 20, 30)
    torch.testing.assert_close(net(lq), lq)
    with pytest.raises(ValueError, match="global_residual"):
        InitialPredictor(in_channels=4, global_residual=True)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        InitialPredictor(in_channels=5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        InitialPredictor()(torch.rand(1, 4, 8, 8))
