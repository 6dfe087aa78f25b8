import torch

from ucdir.models.layers import make_norm, pad_to_multiple


def test_pad_only_to_next_multiple() -> None:
    x = torch.rand(1, 3, 128, 96)
    assert pad_to_multiple(x, 16) is x  # aligned: no official "+32"
    y = pad_to_multiple(torch.rand(1, 3, 37, 53), 16)
    assert y.shape[-2:] == (48, 64)


def test_pad_tiny_image_falls_back_to_replicate() -> None:
    y = pad_to_multiple(torch.rand(1, 3, 3, 2), 16)
    assert y.shape[-2:] == (16, 16)


def test_layer_norm_is_groupnorm_one() -> None:
    """The paper's "LayerNorm" = GroupNorm(1, C) = layer_norm over (C, H, W) + channel affine."""
    norm = make_norm("layer", 6)
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    x = torch.randn(2, 6, 5, 4)
    ref = torch.nn.functional.layer_norm(x, x.shape[1:]) * norm.weight[:, None, None]
    torch.testing.assert_close(norm(x), ref + norm.bias[:, None, None])
