"""The fused rotary kernel equals the reference (interpreter, fp32; GPU, bf16)."""

import pytest
import torch

from clsa.model.layers import rotary_tables
from clsa.ops.rotary import naive, triton_rotary
from clsa.testing import assert_close


@pytest.mark.parametrize("shape", [(1, 1, 1, 8), (2, 5, 3, 16), (3, 7, 24, 32), (2, 9, 10)])
def test_rotary_kernel_matches_reference(shape):
    x = torch.randn(*shape)
    pos = torch.randint(0, 5000, shape[:2])
    cos, sin = rotary_tables(pos, shape[-1], 10000.0)
    assert_close(triton_rotary.rotary(x, cos, sin), naive.rotary(x, cos, sin))


def test_rotary_kernel_reads_strided_views():
    """q, k and v come out of one fused projection: non-contiguous views of one buffer."""
    qkv = torch.randn(2, 6, (4 + 2 * 2) * 16)
    q = qkv[..., :64].view(2, 6, 4, 16)
    cos, sin = rotary_tables(torch.arange(6).expand(2, 6), 16, 500.0)
    assert not q.is_contiguous()
    assert_close(triton_rotary.rotary(q, cos, sin), naive.rotary(q, cos, sin))


@pytest.mark.gpu
def test_rotary_kernel_bf16_on_gpu():
    x = torch.randn(4, 1, 24, 128, device="cuda", dtype=torch.bfloat16)
    cos, sin = rotary_tables(torch.randint(0, 10**5, (4, 1), device="cuda"), 128, 640000.0)
    ref = naive.rotary(x.float(), cos, sin)
    assert_close(triton_rotary.rotary(x, cos, sin), ref, low_precision=naive.rotary(x, cos, sin))

