"""Fused residual-add + RMSNorm and fused SwiGLU gate in Triton (fp32 math, one launch each).

Same signatures as naive.py. One program per row of C (or F) features. Falls back to the
reference for autograd and for tensors Triton cannot take.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import kernel_ok, needs_grad, pdl_enter, use_pdl
from clsa.ops.norm import naive


@triton.jit
def _rms_norm_kernel(x_ptr, r_ptr, w_ptr, out_ptr, sum_ptr, C, eps,
                     HAS_RES: tl.constexpr, BC: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    i_row = tl.program_id(0).to(tl.int64)
    o_c = tl.arange(0, BC)
    m_c = o_c < C
    b_x = tl.load(x_ptr + i_row * C + o_c, mask=m_c, other=0.0)  # [BC]
    if HAS_RES:
        b_x = b_x + tl.load(r_ptr + i_row * C + o_c, mask=m_c, other=0.0)
        tl.store(sum_ptr + i_row * C + o_c, b_x, mask=m_c)
    b_f = b_x.to(tl.float32)
    b_rs = tl.rsqrt(tl.sum(b_f * b_f, axis=0) / C + eps)
    b_w = tl.load(w_ptr + o_c, mask=m_c, other=0.0).to(tl.float32)
    tl.store(out_ptr + i_row * C + o_c, (b_f * b_rs * b_w).to(out_ptr.dtype.element_ty), mask=m_c)


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, F, BF: tl.constexpr):
    i_row = tl.program_id(0).to(tl.int64)
    i_blk = tl.program_id(1)
    o_f = i_blk * BF + tl.arange(0, BF)
    m_f = o_f < F
    b_g = tl.load(gu_ptr + i_row * 2 * F + o_f, mask=m_f, other=0.0).to(tl.float32)
    b_u = tl.load(gu_ptr + i_row * 2 * F + F + o_f, mask=m_f, other=0.0).to(tl.float32)
    b_o = b_g / (1.0 + tl.exp(-b_g)) * b_u
    tl.store(out_ptr + i_row * F + o_f, b_o.to(out_ptr.dtype.element_ty), mask=m_f)


def rms_norm(x, weight, eps: float, residual=None):
    if (needs_grad(x, weight, residual if residual is not None else x)
            or not kernel_ok(x, weight, residual) or x.shape[-1] > 16384):
        return naive.rms_norm(x, weight, eps, residual)
    C = x.shape[-1]
    x2 = x.contiguous().view(-1, C)
    r2 = x2 if residual is None else residual.to(x.dtype).contiguous().view(-1, C)
    out = torch.empty_like(x2)
    summed = torch.empty_like(x2) if residual is not None else x2
    if x2.shape[0]:
        _rms_norm_kernel[(x2.shape[0],)](x2, r2, weight, out, summed, C, eps,
                                         HAS_RES=residual is not None, BC=triton.next_power_of_2(C),
                                         PDL=use_pdl(), num_warps=4 if C <= 4096 else 8,
                                         launch_pdl=use_pdl())
    return out.view(x.shape), summed.view(x.shape)


def silu_mul(gate_up):
    if needs_grad(gate_up) or not kernel_ok(gate_up):
        return naive.silu_mul(gate_up)
    F2 = gate_up.shape[-1]
    g = gate_up.contiguous().view(-1, F2)
    out = torch.empty(g.shape[0], F2 // 2, dtype=g.dtype, device=g.device)
    BF = min(2048, triton.next_power_of_2(F2 // 2))
    if g.shape[0]:
        _silu_mul_kernel[(g.shape[0], triton.cdiv(F2 // 2, BF))](g, out, F2 // 2, BF=BF, num_warps=4)
    return out.view(*gate_up.shape[:-1], F2 // 2)
