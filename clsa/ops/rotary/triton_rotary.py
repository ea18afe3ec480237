"""Rotary embedding in one Triton launch (fp32 math), same signature as naive.rotary.

One program per (b, t) token rotates all H heads of that token: reads x once, the two tables
once, writes the output once (eight small PyTorch kernels become one). Falls back to the
reference for autograd and for tensors Triton cannot take (CPU without the interpreter).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import kernel_ok, needs_grad, pdl_enter, use_pdl
from clsa.ops.rotary import naive


@triton.jit
def _rotary_kernel(x_ptr, cos_ptr, sin_ptr, out_ptr,
                   stride_xb, stride_xt, stride_xh, stride_cb, stride_ct,
                   T, H: tl.constexpr, HALF: tl.constexpr, BH: tl.constexpr, BHALF: tl.constexpr,
                   PDL: tl.constexpr):
    pdl_enter(PDL)
    i_bt = tl.program_id(0).to(tl.int64)
    i_b, i_t = i_bt // T, i_bt % T
    o_h = tl.arange(0, BH)
    o_d = tl.arange(0, BHALF)
    m_h, m_d = o_h < H, o_d < HALF
    p_c = cos_ptr + i_b * stride_cb + i_t * stride_ct + o_d
    b_cos = tl.load(p_c, mask=m_d, other=0.0)[None, :]  # [1, BHALF]
    b_sin = tl.load(sin_ptr + i_b * stride_cb + i_t * stride_ct + o_d, mask=m_d, other=0.0)[None, :]
    m = m_h[:, None] & m_d[None, :]
    p_x = x_ptr + i_b * stride_xb + i_t * stride_xt + o_h[:, None].to(tl.int64) * stride_xh + o_d[None, :]
    b_x1 = tl.load(p_x, mask=m, other=0.0).to(tl.float32)  # [BH, BHALF]
    b_x2 = tl.load(p_x + HALF, mask=m, other=0.0).to(tl.float32)
    p_o = out_ptr + i_bt * (H * 2 * HALF) + o_h[:, None].to(tl.int64) * (2 * HALF) + o_d[None, :]
    tl.store(p_o, (b_x1 * b_cos - b_x2 * b_sin).to(out_ptr.dtype.element_ty), mask=m)
    tl.store(p_o + HALF, (b_x2 * b_cos + b_x1 * b_sin).to(out_ptr.dtype.element_ty), mask=m)


def rotary(x, cos, sin):
    if needs_grad(x) or not kernel_ok(x, cos, sin) or x.stride(-1) != 1:
        return naive.rotary(x, cos, sin)
    squeeze = x.dim() == 3
    x4 = x[:, :, None] if squeeze else x
    B, T, H, D = x4.shape
    cos, sin = cos.float().contiguous(), sin.float().contiguous()
    out = torch.empty(B, T, H, D, dtype=x.dtype, device=x.device)
    if B * T:
        _rotary_kernel[(B * T,)](x4, cos, sin, out, x4.stride(0), x4.stride(1), x4.stride(2),
                                 cos.stride(0), cos.stride(1), T, H=H, HALF=D // 2,
                                 BH=triton.next_power_of_2(H), BHALF=triton.next_power_of_2(D // 2),
                                 PDL=use_pdl(), num_warps=1 if H * D <= 1024 else 4,
                                 launch_pdl=use_pdl())
    return out[:, :, 0] if squeeze else out
