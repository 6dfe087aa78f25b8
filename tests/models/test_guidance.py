import pytest
import torch
import torch.nn.functional as F

from ucdir.models.guidance import AdaptiveKernelGuidance


def explicit_eq2(akgm: AdaptiveKernelGuidance, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 2 by brute force: fuse each pixel's kernel F(i,j) = Σ_b M_b(i,j)·W_b, apply it."""
    w, bias = akgm.basis_kernels()  # (N, C, C, 3, 3), (N, C)
    b_, c, hh, ww = h.shape
    hp = F.pad(h, (1, 1, 1, 1))
    out = torch.empty(b_, c, hh, ww, dtype=h.dtype)
    for b in range(b_):
        for i in range(hh):
            for j in range(ww):
                fused = (m[b, :, i, j, None, None, None, None] * w).sum(0)  # (C, C, 3, 3)
                fused_bias = (m[b, :, i, j, None] * bias).sum(0)
                patch = hp[b, :, i : i + 3, j : j + 3]
                out[b, :, i, j] = (fused * patch[None]).sum((1, 2, 3)) + fused_bias
    return out


@pytest.mark.parametrize("channels,kernels", [(8, 4), (16, 8), (6, 3)])
def test_akgm_equals_explicit_eq2(channels: int, kernels: int) -> None:
    g = torch.Generator().manual_seed(0)
    akgm = AdaptiveKernelGuidance(channels, kernels).double()
    h = torch.randn(2, channels, 5, 7, generator=g, dtype=torch.float64)
    m = torch.randn(2, kernels, 5, 7, generator=g, dtype=torch.float64)
    with torch.no_grad():
        fast = akgm(h, m)
        slow = explicit_eq2(akgm, h, m)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)


def test_akgm_gradients_equal_explicit_eq2() -> None:
    """The batched-matmul fusion differentiates like Eq. 2 itself: same gradients for h, M, the
    basis weights and biases (spatial M and per-sample M alike)."""
    g = torch.Generator().manual_seed(1)
    akgm = AdaptiveKernelGuidance(8, 4).double()
    h = torch.randn(2, 8, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 8, 4, 5, generator=g, dtype=torch.float64)
    for m_shape in ((2, 4, 4, 5), (2, 4, 1, 1)):
        m = torch.randn(*m_shape, generator=g, dtype=torch.float64, requires_grad=True)
        grads = []
        for fn in (akgm, lambda h, m: explicit_eq2(akgm, h, m.expand(-1, -1, 4, 5))):
            out = fn(h, m)
            grads.append(torch.autograd.grad(out, [h, m, *akgm.parameters()], grad_out))
        for fast, slow in zip(*grads, strict=True):
            torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-7)


def test_akgm_official_weight_layout() -> None:
    """Output channel o = c·N + b of the grouped conv is basis b of output channel c, and reads
    input group ⌊c / (C/N)⌋ (the official layout, kept so official checkpoints load)."""
    akgm = AdaptiveKernelGuidance(8, 4)
    assert akgm.bases.weight.shape == (32, 2, 3, 3)
    dense, _ = akgm.basis_kernels()
    for c in range(8):
        for b in range(4):
            nonzero_inputs = dense[b, c].abs().sum((1, 2)).nonzero().flatten().tolist()
            assert nonzero_inputs == [2 * (c // 2), 2 * (c // 2) + 1]
            torch.testing.assert_close(
                dense[b, c, 2 * (c // 2) : 2 * (c // 2) + 2], akgm.bases.weight[c * 4 + b]
            )


def test_akgm_with_scalar_weights_only() -> None:
    """M of shape (B, N, 1, 1) (no spatial guidance) broadcasts over all pixels."""
    akgm = AdaptiveKernelGuidance(8, 4)
    h = torch.randn(1, 8, 6, 6)
    s = torch.randn(1, 4, 1, 1)
    torch.testing.assert_close(akgm(h, s), akgm(h, s.expand(-1, -1, 6, 6)))


def test_akgm_rejects_indivisible_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AdaptiveKernelGuidance(10, 4)
