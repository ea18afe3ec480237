"""Gather the selected K/V rows into a compact buffer, one Triton kernel (same API as
``naive.gather_kv``): the "gather once" half of "gather once, attend many".

Shape legend
    k, v          [B, S, Hkv, D]   the shared cache (any strides)
    idx           [B, K] int       selected slots, -1 padded
    k_sel, v_sel  [B, K, Hkv, D]   contiguous; the row of a -1 (or out-of-range) entry is zeros

Readers mask padded rows through k_pos = idx (``attention(q, k_sel, v_sel, q_pos, idx, ...)``),
so their content only has to be finite. Grid (cdiv(K, BR), B * Hkv): one program copies BR
selected rows of one K/V head, K and V together, D-contiguous vector loads/stores, int64 addresses.
Falls back to the reference when autograd is needed or Triton cannot run on the tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import kernel_ok, needs_grad, pdl_enter, use_pdl
from clsa.ops.sparse_attention import naive


@triton.jit
def _gather_kv_kernel(
    k, v, idx, k_sel, v_sel,
    s_kb, s_ks, s_kh, s_kd,
    s_vb, s_vs, s_vh, s_vd,
    s_ib, s_ik,
    S, K,
    HKV: tl.constexpr, D: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, PDL: tl.constexpr,
):
    pdl_enter(PDL)  # the index (and this step's cache row) come from the launches before
    i_r, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = (i_bh // HKV).to(tl.int64), (i_bh % HKV).to(tl.int64)
    o_j = i_r * BR + tl.arange(0, BR).to(tl.int64)
    o_d = tl.arange(0, BD)
    m_j = o_j < K
    m_d = o_d < D
    b_ix = tl.load(idx + i_b * s_ib + o_j * s_ik, mask=m_j, other=-1).to(tl.int64)  # [BR]
    m_src = ((b_ix >= 0) & (b_ix < S))[:, None] & m_d[None, :]  # [BR, BD]
    p_k = k + i_b * s_kb + b_ix[:, None] * s_ks + i_h * s_kh + o_d[None, :] * s_kd
    p_v = v + i_b * s_vb + b_ix[:, None] * s_vs + i_h * s_vh + o_d[None, :] * s_vd
    b_k = tl.load(p_k, mask=m_src, other=0.)  # [BR, BD]
    b_v = tl.load(p_v, mask=m_src, other=0.)  # [BR, BD]
    # k_sel / v_sel: fresh contiguous [B, K, HKV, D]
    o_dst = ((i_b * K + o_j) * HKV + i_h)[:, None] * D + o_d[None, :]
    m_dst = m_j[:, None] & m_d[None, :]
    tl.store(k_sel + o_dst, b_k, mask=m_dst)
    tl.store(v_sel + o_dst, b_v, mask=m_dst)


def gather_kv(k, v, idx, block_rows: int = 32):
    """k, v [B, S, Hkv, D]; idx [B, K] int (-1 padded) -> k_sel, v_sel [B, K, Hkv, D].

    One launch, no host sync; rows of -1 entries are zeros (the reference fills slot 0's data;
    both are finite and masked by readers). Autograd, or tensors Triton cannot run on, use
    ``naive.gather_kv``.
    """
    B, S, Hkv, D = k.shape
    if v.shape != k.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    if idx.dim() != 2 or idx.shape[0] != B:
        raise ValueError(f"idx must be [B, K] = [{B}, K], got {tuple(idx.shape)}")
    if needs_grad(k, v) or not kernel_ok(k, v, idx):
        return naive.gather_kv(k, v, idx)
    K = idx.shape[1]
    k_sel = torch.empty(B, K, Hkv, D, dtype=k.dtype, device=k.device)
    v_sel = torch.empty(B, K, Hkv, D, dtype=v.dtype, device=v.device)
    if K == 0:
        return k_sel, v_sel
    _gather_kv_kernel[(triton.cdiv(K, block_rows), B * Hkv)](
        k, v, idx, k_sel, v_sel, *k.stride(), *v.stride(), *idx.stride(), S, K,
        HKV=Hkv, D=D, BR=block_rows, BD=max(16, triton.next_power_of_2(D)), PDL=use_pdl(),
        num_warps=4, launch_pdl=use_pdl(),
    )
    return k_sel, v_sel
