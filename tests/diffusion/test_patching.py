import itertools

import pytest
import torch

from tests.diffusion.helpers import load_sampler, local_eps, make_cond
from ucdir.diffusion.memory import AutoPatchSplit
from ucdir.diffusion.patching import NaivePatchSplit, PatchSplit, map_predictor, spans
from ucdir.models import ConditionalUNet, InitialPredictor
from ucdir.restore import restore


@pytest.mark.parametrize(
    "length,tile,overlap",
    [(300, 128, 32), (200, 128, 32), (97, 32, 8), (128, 128, 32), (50, 128, 32), (1000, 256, 0)],
)
def test_spans_cores_partition_the_axis(length: int, tile: int, overlap: int) -> None:
    out = spans(length, tile, overlap)
    assert out[0].core_start == 0 and out[-1].core_stop == length
    for a, b in itertools.pairwise(out):
        assert a.core_stop == b.core_start
    for s in out:
        assert s.stop - s.start == min(tile, length)
        assert s.start <= s.core_start < s.core_stop <= s.stop
        if s.start > 0:
            assert s.core_start - s.start >= overlap
        if s.stop < length:
            assert s.stop - s.core_stop >= overlap


@pytest.mark.parametrize("merge", ["drop", "feather"])
@pytest.mark.parametrize("size", [(70, 90), (24, 40), (33, 129)])
def test_local_predictor_is_unchanged_by_splitting(merge: str, size: tuple[int, int]) -> None:
    eps_fn = local_eps()
    cond = make_cond(2, *size)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(5))
    gamma = torch.tensor([0.3, 0.8])
    for batch_tiles in (1, 3):
        tiled = PatchSplit(32, 8, merge, batch_tiles).wrap(eps_fn)
        torch.testing.assert_close(tiled(x, gamma, cond), eps_fn(x, gamma, cond), atol=1e-5, rtol=0)


@pytest.mark.parametrize("merge", ["drop", "feather"])
def test_inter_step_sampling_equals_whole_image_and_naive_does_not(merge: str) -> None:
    sampler = load_sampler("ddpm", steps=8)
    eps_fn = local_eps()
    lq = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(2))
    predictor = torch.nn.Identity()

    def run(patch):
        return restore(lq, predictor, eps_fn, sampler, patch, torch.Generator().manual_seed(0))

    whole = run(None).restored
    torch.testing.assert_close(run(PatchSplit(32, 8, merge)).restored, whole, atol=1e-5, rtol=0)
    assert (run(NaivePatchSplit(32, 8)).restored - whole).abs().max() > 1e-2


def _reach(predictor: InitialPredictor, size: int) -> int:
    """Farthest input px (from the centre) whose gradient reaches the centre output pixel."""
    x = torch.randn(1, predictor.in_channels, size, size, requires_grad=True)
    c = size // 2
    out = predictor(x)
    out[..., c * predictor.upscale, c * predictor.upscale].sum().backward()
    assert x.grad is not None
    rows, cols = x.grad.abs().sum((0, 1)).nonzero(as_tuple=True)
    return int(max((rows - c).abs().max(), (cols - c).abs().max()))


@pytest.mark.parametrize("width", [4, 32])
def test_predictor_receptive_radius_bounds_its_reach(width: int) -> None:
    predictor = InitialPredictor(width=width)
    reach = _reach(predictor, 320)
    assert 80 < reach <= predictor.receptive_radius, (reach, predictor.receptive_radius)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_tiled_predictor_equals_the_whole_image_pass(in_channels: int) -> None:
    """The real predictor (official width) tiled over a 300×400 input gives the whole-image
    x_init to 1e-5; the denoiser's 32 px overlap (what the tiling used to be) does not."""
    torch.manual_seed(0)
    predictor = InitialPredictor(in_channels=in_channels).eval()
    scale = predictor.upscale
    lq = torch.rand(1, in_channels, 300 // scale, 400 // scale) * 2 - 1
    with torch.no_grad():
        whole = predictor(lq)
        tiled = map_predictor(predictor, lq, max_pixels=1, tile=96, scale=scale)
        small_margin = PatchSplit(128, 32)
        naive = torch.zeros_like(whole)
        for r, c in small_margin.boxes(*lq.shape[-2:]):
            part = predictor(lq[..., r.start : r.stop, c.start : c.stop])
            rs, cs = slice(r.core_start, r.core_stop), slice(c.core_start, c.core_stop)
            rs_s = slice((r.core_start - r.start) * scale, (r.core_stop - r.start) * scale)
            cs_s = slice((c.core_start - c.start) * scale, (c.core_stop - c.start) * scale)
            naive[..., rs.start * scale : rs.stop * scale, cs.start * scale : cs.stop * scale] = (
                part[..., rs_s, cs_s]
            )
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert (naive - whole).abs().max() > 1e-3


def test_restore_runs_the_predictor_whole_below_the_pixel_limit() -> None:
    calls = []
    predictor = InitialPredictor(width=4).eval()
    predictor.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    sampler = load_sampler("ddim", steps=1)
    lq = torch.rand(1, 3, 70, 90)
    restore(lq, predictor, local_eps(), sampler, PatchSplit(32, 8))
    assert calls == [(70, 90)]
    calls.clear()
    restore(
        lq,
        predictor,
        local_eps(),
        sampler,
        PatchSplit(32, 8, predictor_max_pixels=100, predictor_tile=32),
    )
    assert len(calls) == 9 and all(h <= 32 + 2 * 128 for h, _ in calls)


def test_bad_patch_settings_raise() -> None:
    with pytest.raises(ValueError, match="overlap"):
        PatchSplit(64, 32)
    with pytest.raises(ValueError, match="merge"):
        PatchSplit(64, 8, "blend")  # type: ignore[arg-type]


def boundary_excess(image: torch.Tensor, boundaries: list[int]) -> float:
    """Mean |horizontal gradient| across tile-boundary columns / mean elsewhere."""
    grad = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1, 2))  # per column pair
    at = torch.tensor([b - 1 for b in boundaries])
    mask = torch.zeros_like(grad, dtype=torch.bool)
    mask[at] = True
    return float(grad[mask].mean() / grad[~mask].mean())


@pytest.mark.slow
def test_inter_step_splitting_leaves_no_seams(record_property) -> None:
    torch.manual_seed(0)
    net = ConditionalUNet(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4).eval()
    predictor = InitialPredictor().eval()
    lq = torch.rand(1, 3, 200, 300, generator=torch.Generator().manual_seed(3))
    sampler = load_sampler("ddpm", steps=10)
    boundaries = [s.core_stop for s in spans(300, 128, 32)[:-1]]
    ratios = {}
    for name, patch in (("inter_step", PatchSplit(128, 32)), ("naive", NaivePatchSplit(128, 32))):
        out = restore(lq, predictor, net, sampler, patch, torch.Generator().manual_seed(0))
        ratios[name] = boundary_excess(out.restored - out.x_init, boundaries)
        record_property(f"boundary_gradient_ratio_{name}", ratios[name])
    assert ratios["inter_step"] < 1.15, ratios
    assert ratios["naive"] > ratios["inter_step"], ratios


def test_auto_tile_grows_with_the_budget_and_bounds_memory() -> None:
    net = ConditionalUNet(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4)
    cond = make_cond(1, 600, 900)
    tiles = [AutoPatchSplit(gb, overlap=16).tile_for(net, cond) for gb in (0.05, 0.2, 0.8)]
    assert tiles == sorted(tiles) and tiles[0] < tiles[-1]
    assert all(t % 32 == 0 and t >= 64 for t in tiles)
    # a generous budget takes the whole image in one tile
    assert AutoPatchSplit(64.0).tile_for(net, cond) >= 900


def test_restore_with_auto_patch_runs() -> None:
    net = ConditionalUNet(width=16, mults=(1, 2, 2), attn_levels=(2,), kernels=4).eval()
    lq = torch.rand(1, 3, 80, 100)
    out = restore(
        lq,
        torch.nn.Identity(),
        net,
        load_sampler("ddim", steps=2),
        AutoPatchSplit(0.02, overlap=8),
        torch.Generator().manual_seed(0),
    )
    assert out.restored.shape == lq.shape
