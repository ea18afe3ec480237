"""Fused residual-add + RMSNorm and the SwiGLU gate equal their references."""

import pytest
import torch

from clsa.ops.norm import naive, triton_norm
from clsa.testing import assert_close


@pytest.mark.parametrize("shape", [(1, 1, 8), (2, 3, 33), (5, 96), (2, 7, 100)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_reference(shape, with_residual):
    x, w = torch.randn(*shape), torch.randn(shape[-1])
    r = torch.randn(*shape) if with_residual else None
    out, summed = triton_norm.rms_norm(x, w, 1e-5, r)
    ref, ref_sum = naive.rms_norm(x, w, 1e-5, r)
    assert_close(out, ref)
    assert_close(summed, ref_sum)


@pytest.mark.parametrize("shape", [(1, 1, 16), (3, 5, 70), (4, 4098)])
def test_silu_mul_matches_reference(shape):
    gu = torch.randn(*shape)
    assert_close(triton_norm.silu_mul(gu), naive.silu_mul(gu))


@pytest.mark.gpu
def test_norm_ops_bf16_on_gpu():
    x = torch.randn(4, 1, 3072, device="cuda", dtype=torch.bfloat16)
    r, w = torch.randn_like(x), torch.randn(3072, device="cuda", dtype=torch.bfloat16)
    out, _ = triton_norm.rms_norm(x, w, 1e-5, r)
    ref, _ = naive.rms_norm(x.float(), w.float(), 1e-5, r.float())
    assert_close(out, ref, low_precision=naive.rms_norm(x, w, 1e-5, r)[0])
    gu = torch.randn(4, 1, 16384, device="cuda", dtype=torch.bfloat16)
    assert_close(triton_norm.silu_mul(gu), naive.silu_mul(gu.float()), low_precision=naive.silu_mul(gu))
