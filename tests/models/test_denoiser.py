import itertools

import pytest
import torch

from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.models.blocks import GUIDES, INTEGRATIONS
from ucdir.stats import count_params, network_macs
from ucdir.types import Cond

TINY = dict(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4)
VARIANTS = [
    dict(guide=g, integration=i)
    for g, i in itertools.product(GUIDES, INTEGRATIONS)
    if not (i == "dvsr" and g == "internal")
] + [
    dict(norm="group"),
    dict(norm="none"),
    dict(act="relu"),
    dict(aux_scalars=("quality", "ratio")),
]


def inputs(b: int = 2, h: int = 37, w: int = 53, k: int = 0, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(b, 3, h, w, generator=g)
    gamma = torch.rand(b, generator=g)
    cond = Cond(
        torch.rand(b, 3, h, w, generator=g),
        torch.rand(b, 3, h, w, generator=g),
        torch.rand(b, k, generator=g) if k else None,
    )
    return x_t, gamma, cond


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_every_variant_shapes_and_gradients(variant: dict) -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY, **variant)
    x_t, gamma, cond = inputs(k=len(variant.get("aux_scalars", ())))
    out = net(x_t, gamma, cond)
    assert out.shape == x_t.shape and out.dtype == torch.float32
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_default_parameter_counts_match_official() -> None:
    net = ConditionalUNet()
    assert count_params(net) == 97_354_699
    assert count_params(net) + count_params(InitialPredictor()) == 105_114_862


def test_small_config_matches_official_reduced() -> None:
    assert count_params(ConditionalUNet(width=32)) == 24_391_755


def test_default_macs_at_128_match_official() -> None:
    macs = network_macs(InitialPredictor(), ConditionalUNet(), 128)
    assert abs(macs["denoiser"] / 1e9 - 46.24) / 46.24 < 0.02
    assert abs(macs["predictor"] / 1e9 - 3.02) / 3.02 < 0.02


def test_aux_scalars_change_the_output() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY, aux_scalars=("quality",)).eval()
    x_t, gamma, cond = inputs(k=1)
    a = net(x_t, gamma, cond)
    b = net(x_t, gamma, cond._replace(scalars=cond.scalars + 0.3))
    assert (a - b).abs().max() > 1e-4


def test_aux_scalars_are_required_when_configured() -> None:
    net = ConditionalUNet(**TINY, aux_scalars=("quality",))
    x_t, gamma, cond = inputs()
    with pytest.raises(ValueError, match="auxiliary scalars"):
        net(x_t, gamma, cond)


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_guide_changes_the_output_unless_none(integration: str) -> None:
    x_t, gamma, cond = inputs()
    other = cond._replace(x_init=torch.rand_like(cond.x_init))
    for guide, should_change in (("initial", True), ("none", False)):
        torch.manual_seed(0)
        net = ConditionalUNet(**TINY, guide=guide, integration=integration).eval()
        diff = (net(x_t, gamma, cond) - net(x_t, gamma, other)).abs().max()
        assert (diff > 1e-4) == should_change, (guide, float(diff))


def test_gamma_changes_the_output() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY).eval()
    x_t, gamma, cond = inputs()
    assert (net(x_t, gamma, cond) - net(x_t, gamma * 0.5, cond)).abs().max() > 1e-4


def test_batch_items_are_independent_at_aligned_and_odd_sizes() -> None:
    """One image's output does not depend on the other images of its batch."""
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY).eval()
    for h, w in ((32, 48), (17, 33)):
        x_t, gamma, cond = inputs(2, h, w)
        full = net(x_t, gamma, cond)
        one = net(x_t[:1], gamma[:1], Cond(cond.lq[:1], cond.x_init[:1]))
        torch.testing.assert_close(full[:1], one, atol=1e-5, rtol=1e-5)


def test_padding_to_the_stride_is_cropped_back_without_a_shift() -> None:
    """An odd-size image, padded inside the network to the stride and cropped back, gives the
    output the same content gets inside a larger aligned image, wherever the padding and the
    image borders are out of reach.

    The network is made local (no attention, no normalisation, no output GroupNorm: each is
    global) so that reach is bounded: 30 px for two levels, blocks=1 (measured by gradients).
    An odd padding offset, a crop at the wrong side or a resize would all move the centre.
    """
    torch.manual_seed(0)
    net = ConditionalUNet(
        width=8,
        mults=(1, 2),
        blocks=1,
        attn_levels=(),
        mid_attn=False,
        kernels=4,
        norm="none",
        dropout=0.0,
    ).eval()
    net.head[0] = torch.nn.Identity()
    reach, (h, w), (top, left) = 32, (81, 97), (6, 10)  # odd size; even offset (the stride is 2)
    x_t, gamma, cond = inputs(1, 96, 120)  # the aligned canvas
    assert net.stride == 2
    window = (..., slice(top, top + h), slice(left, left + w))
    odd = Cond(cond.lq[window], cond.x_init[window])
    with torch.no_grad():
        inside = net(x_t, gamma, cond)[window]
        alone = net(x_t[window], gamma, odd)
    assert alone.shape == (1, 3, h, w)
    centre = (..., slice(reach, h - reach), slice(reach, w - reach))
    torch.testing.assert_close(alone[centre], inside[centre], atol=1e-5, rtol=1e-5)
    assert (alone - inside).abs().amax() > 1e-3  # near the borders they differ, as they should


def test_scalar_gamma_broadcasts() -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(**TINY).eval()
    x_t, _, cond = inputs()
    torch.testing.assert_close(
        net(x_t, torch.tensor(0.3), cond), net(x_t, torch.full((2,), 0.3), cond)
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernels=3), "divisible"),
        (dict(guide="image"), "guide"),
        (dict(integration="film"), "integration"),
        (dict(norm="batch"), "norm"),
        (dict(act="gelu"), "act"),
        (dict(integration="dvsr", guide="internal"), "internal"),
        (dict(attn_levels=(5,)), "attn_levels"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConditionalUNet(**{**TINY, **kwargs})


def test_mismatched_condition_shapes_raise() -> None:
    net = ConditionalUNet(**TINY)
    x_t, gamma, cond = inputs()
    with pytest.raises(ValueError, match="lq"):
        net(x_t, gamma, cond._replace(lq=cond.lq[..., :-1]))
    with pytest.raises(ValueError, match="gamma"):
        net(x_t, torch.rand(3), cond)
