"""Token-sparse GQA decode attention that gathers the selected rows inside the kernel (Triton).

Same API as ``naive.sparse_attention``. Shape legend (as in naive.py)
    q    [B, Tq, Hq, D]        k, v [B, S, Hkv, D] (the full shared cache)
    idx  [B, Tq, K] int        selected slots per query, -1 padding, one index for all K/V heads
    out  [B, Tq, Hq, D]        G = Hq // Hkv query heads share one K/V head
    partials m, l [B * Tq * Hkv, G, NS] fp32, acc [B * Tq * Hkv, G, NS, D] fp32
    counters [>= B * Tq * Hkv] int32, one per group (query, K/V head), zero between launches

This is the "gather in each layer" variant: every cross-decoder layer that calls it reads its
selected K/V rows straight from the scattered cache. The alternative, "gather once, attend many",
is ``triton_gather.gather_kv`` once per step followed by the dense decode kernel
``clsa.ops.attention.triton_decode.attention`` on the compact buffer (k_pos = idx); README.md
compares the bytes moved.

Kernel path (Tq <= 16, no autograd, CUDA or the Triton interpreter): one launch of
``_sparse_split_kernel``, grid (NS, B * Tq * Hkv). A program owns the G query heads of one
(query, K/V head) group as one tile, walks its chunk of the index in blocks of BS entries, loads
the index block, and loads only the K/V rows of valid entries (idx >= 0; out-of-range entries are
masked too) with int64 addressing. fp32 online softmax; the epilogue shared with the dense kernel
(``_write_group``) writes out directly when NS == 1, otherwise writes partials and the group's last
split to draw a ticket merges them in the same launch. No host sync, no memset.

Index entries of one row must be distinct (top-k guarantees it): the kernel, like gather_kv +
attention, counts a repeated slot twice, the reference (a boolean mask) once.

Fallbacks: autograd or Tq > 16 -> masked SDPA on CUDA, ``naive.sparse_attention`` elsewhere.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import (NEG_INIT, SPAN_VEC, _block_span, _fold_preloaded,
                                              _online_softmax_block, _query_tile, _tables,
                                              _write_group, dot_precision, interpreting, kernel_ok,
                                              launch_plan, masked_sdpa, merge_tiles, needs_grad,
                                              pdl_enter, preload_first_block, split_scratch,
                                              use_pdl)
from clsa.ops.rotary.triton_rotary import rotary
from clsa.ops.sparse_attention import naive

MAX_TQ = 16  # queries per row handled by the kernel (decode, small speculative batches)


@triton.jit
def _gather_step(b_q, p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K, i_j0, m_blk,
                 b_mi, b_li, b_acc, qk_scale,
                 BS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, G: tl.constexpr,
                 D: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Index entries [i_j0, i_j0 + BS) (``_gather_load``) folded into the online softmax."""
    b_k, b_v, b_vis = _gather_load(p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K, i_j0,
                                   m_blk, BS, BM, BD, G, D)
    return _online_softmax_block(b_q, b_k, b_v, b_vis, b_mi, b_li, b_acc, qk_scale,
                                 DOT_PRECISION)


@triton.jit
def _gather_load(p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K, i_j0, m_blk,
                 BS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, G: tl.constexpr,
                 D: tl.constexpr):
    """Index entries [i_j0, i_j0 + BS): load the index block and gather the selected K/V rows
    straight from the cache (int64 row offsets; -1 or out-of-range entries masked: no bytes,
    zeros). Returns (K, V, visibility [BM, BS]); ``m_blk`` False turns the block off."""
    o_j = (i_j0 + tl.arange(0, BS)).to(tl.int64)
    o_d = tl.arange(0, BD)
    b_ix = tl.load(p_ib + o_j * s_ik, mask=o_j < K, other=-1).to(tl.int64)  # [BS]
    m_col = (b_ix >= 0) & (b_ix < S) & m_blk  # [BS]
    b_vis = (tl.arange(0, BM) < G)[:, None] & m_col[None, :]  # [BM, BS]
    m_kv = m_col[:, None] & (o_d < D)[None, :]  # [BS, BD]
    b_k = tl.load(p_kb + b_ix[:, None] * s_ks + o_d[None, :] * s_kd, mask=m_kv, other=0.)
    b_v = tl.load(p_vb + b_ix[:, None] * s_vs + o_d[None, :] * s_vd, mask=m_kv, other=0.)
    return b_k, b_v, b_vis


@triton.jit
def _sparse_split_kernel(
    q, k, v, idx, out, m_part, l_part, acc_part, counters, cos, sin,
    s_qb, s_qt, s_qh, s_qd, s_cb, s_ct,
    s_kb, s_ks, s_kh, s_kd,
    s_vb, s_vs, s_vh, s_vd,
    s_ib, s_it, s_ik,
    S, K, qk_scale,
    TQ: tl.constexpr, HKV: tl.constexpr, G: tl.constexpr, D: tl.constexpr, NS: tl.constexpr,
    CHUNK: tl.constexpr, BS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
    BN: tl.constexpr, RB: tl.constexpr, NBP: tl.constexpr,
    SKIP_EMPTY: tl.constexpr, DYN_SPAN: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ROPE: tl.constexpr, PRELOAD: tl.constexpr, PDL: tl.constexpr,
):
    if not PRELOAD:
        pdl_enter(PDL)  # q and the index come from the launches before
    i_s, i_g = tl.program_id(0), tl.program_id(1)
    i_bt, i_h = i_g // HKV, i_g % HKV
    i_b, i_t = (i_bt // TQ).to(tl.int64), (i_bt % TQ).to(tl.int64)

    o_m = tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m_m = o_m < G
    m_d = o_d < D
    o_hq = (i_h * G + o_m).to(tl.int64)
    p_q = q + i_b * s_qb + i_t * s_qt + o_hq[:, None] * s_qh + o_d[None, :] * s_qd
    # every row is query i_t: one rotary table row, broadcast over the G heads
    p_cs = i_b * s_cb + i_t * s_ct + o_m[:, None] * 0  # [BM, 1]
    if not PRELOAD:
        b_q = _query_tile(p_q, cos + p_cs, sin + p_cs, s_qd, o_d, m_m[:, None] & m_d[None, :], D,
                          ROPE)  # [BM, BD]

    b_mi = tl.full([BM], NEG_INIT, dtype=tl.float32)
    b_li = tl.zeros([BM], dtype=tl.float32)
    b_acc = tl.zeros([BM, BD], dtype=tl.float32)

    p_ib = idx + i_b * s_ib + i_t * s_it
    p_kb = k + i_b * s_kb + i_h.to(tl.int64) * s_kh
    p_vb = v + i_b * s_vb + i_h.to(tl.int64) * s_vh
    # phase 1 (index only): the span of blocks holding a valid entry; -1 tails cost nothing
    i_first = tl.full((), CHUNK // BS, tl.int32)
    i_last = tl.full((), -1, tl.int32)
    if SKIP_EMPTY and NBP * BS <= SPAN_VEC:
        # a chunk of at most SPAN_VEC entries (block-padded): its whole index in one load, one
        # round trip instead of one per block (as the dense kernel's k_pos scan)
        o_c = tl.arange(0, NBP * BS)
        o_j = tl.where(o_c < CHUNK, i_s * CHUNK + o_c, K).to(tl.int64)  # past the chunk: masked
        b_ix = tl.load(p_ib + o_j * s_ik, mask=o_j < K, other=-1)  # [NBP * BS]
        i_first, i_last = _block_span(((b_ix >= 0) & (b_ix < S)).to(tl.int32), NBP, BS, CHUNK)
    elif SKIP_EMPTY:
        for i_blk in range(0, CHUNK // BS):
            o_j = (i_s * CHUNK + i_blk * BS + tl.arange(0, BS)).to(tl.int64)
            b_ix = tl.load(p_ib + o_j * s_ik, mask=o_j < K, other=-1)  # [BS]
            b_any = tl.max(((b_ix >= 0) & (b_ix < S)).to(tl.int32), axis=0)
            i_first = tl.minimum(i_first, tl.where(b_any > 0, i_blk, CHUNK // BS))
            i_last = tl.maximum(i_last, tl.where(b_any > 0, i_blk, -1))
    else:
        i_first = i_first * 0
        i_last = i_last * 0 + CHUNK // BS - 1
    i_from = i_first
    if PRELOAD:  # as in the dense kernel: the index and the K/V were written before the launch
        # before this one began, so the first block is gathered before the wait; q after it
        b_k, b_v, b_vis = _gather_load(p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K,
                                       i_s * CHUNK + i_first * BS, i_first <= i_last,
                                       BS, BM, BD, G, D)
        b_q, b_mi, b_li, b_acc = _fold_preloaded(
            b_k, b_v, b_vis, p_q, cos + p_cs, sin + p_cs, s_qd, o_d, m_m[:, None] & m_d[None, :],
            b_mi, b_li, b_acc, qk_scale, D, ROPE, DOT_PRECISION, PDL)
        i_from = i_first + 1
    # phase 2: branch-free over the span (pipelined loads); see the dense kernel for DYN_SPAN
    if DYN_SPAN:
        for i_blk in range(i_from, i_last + 1):
            b_mi, b_li, b_acc = _gather_step(
                b_q, p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K,
                i_s * CHUNK + i_blk * BS, True, b_mi, b_li, b_acc, qk_scale,
                BS, BM, BD, G, D, DOT_PRECISION)
    else:  # up to NBP >= CHUNK / BS blocks: a span reaching past the chunk would count twice
        for i_blk in range(0, NBP):
            b_mi, b_li, b_acc = _gather_step(
                b_q, p_ib, p_kb, p_vb, s_ik, s_ks, s_kd, s_vs, s_vd, S, K,
                i_s * CHUNK + i_blk * BS, (i_blk >= i_from) & (i_blk <= i_last),
                b_mi, b_li, b_acc, qk_scale, BS, BM, BD, G, D, DOT_PRECISION)

    # out is a fresh contiguous [B, Tq, Hq, D]: group i_g = (b * Tq + t) * Hkv + h owns the
    # [G, D] rows that start at element i_g * G * D
    p_out = out + i_g.to(tl.int64) * G * D
    _write_group(b_mi, b_li, b_acc, p_out, m_part, l_part, acc_part, counters, i_g, i_s,
                 G, HKV * G, G, D, NS, BM, BD, BN, RB)


def tile_meta(Tq: int, Hkv: int, G: int, D: int, NS: int, chunk: int, block_s: int,
              num_warps: int) -> dict:
    """The shape constexprs of ``_sparse_split_kernel`` for a launch (the launcher and the sm_90
    compile report both take them from here)."""
    return dict(TQ=Tq, HKV=Hkv, G=G, D=D, NS=NS, CHUNK=chunk, BS=block_s,
                BM=max(16, triton.next_power_of_2(G)), BD=max(16, triton.next_power_of_2(D)),
                NBP=triton.next_power_of_2(chunk // block_s), **merge_tiles(G, NS, D, num_warps))


def sparse_attention_decode(q, k, v, idx, scale: float | None = None,
                            block_s: int | None = None, chunk: int | None = None,
                            skip_empty: bool = True, num_warps: int | None = None,
                            num_stages: int = 2, rope=None, kv_ready: bool = False,
                            preload: bool | None = None):
    """The kernel launcher (no fallback); ``chunk`` overrides the split plan (tests). ``rope`` =
    (cos, sin) [B, Tq, D/2]: rotate q as it is loaded (as in ``sparse_attention``). ``kv_ready``
    allows the first block to be gathered before the wait, ``preload_first_block`` decides
    (``preload`` forces it, tests)."""
    B, Tq, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    if Hq % Hkv:
        raise ValueError(f"Hq={Hq} must be a multiple of Hkv={Hkv}")
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k {tuple(k.shape)} / v {tuple(v.shape)} do not match q {tuple(q.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if idx.dim() != 3 or idx.shape[:2] != (B, Tq):
        raise ValueError(f"idx must be [B, Tq, K] = [{B}, {Tq}, K], got {tuple(idx.shape)}")
    if Tq > MAX_TQ:
        raise ValueError(f"Tq={Tq} > {MAX_TQ}: use sparse_attention(), which falls back")
    K = idx.shape[2]
    G = Hq // Hkv
    cos, sin = _tables(rope, q)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = torch.empty(B, Tq, Hq, D, dtype=q.dtype, device=q.device)
    if K == 0 or S == 0:
        return out.zero_()
    n_groups = B * Tq * Hkv
    block_s, warps, chunk, NS = launch_plan(n_groups, K, q.dtype, q.device, block_s, chunk)
    num_warps = warps if num_warps is None else num_warps
    m_part, l_part, acc_part, counters = split_scratch(n_groups, G, NS, D, out)
    _sparse_split_kernel[(NS, n_groups)](
        q, k, v, idx, out, m_part, l_part, acc_part, counters, cos, sin,
        *q.stride(), *cos.stride()[:2], *k.stride(), *v.stride(), *idx.stride(),
        S, K, scale * 1.4426950408889634,
        **tile_meta(Tq, Hkv, G, D, NS, chunk, block_s, num_warps),
        SKIP_EMPTY=skip_empty, DYN_SPAN=not interpreting(), DOT_PRECISION=dot_precision(q.dtype),
        ROPE=rope is not None,
        PRELOAD=preload_first_block(kv_ready, chunk, block_s) if preload is None else preload,
        PDL=use_pdl(), num_warps=num_warps, num_stages=num_stages,
        launch_pdl=use_pdl(),
    )
    return out


def sparse_attention(q, k, v, idx, scale: float | None = None, query_chunk: int = 256, rope=None,
                     kv_ready: bool = False):
    """Attention of each query over its selected slots only; same API and result as
    ``naive.sparse_attention`` (for rows of distinct slots).

    q [B, Tq, Hq, D]; k, v [B, S, Hkv, D]; idx [B, Tq, K] int, -1 padded. A row of only -1
    returns zeros. ``rope`` = (cos, sin) fp32 [B, Tq, D/2]: q is first rotated by them (NeoX
    layout); the kernel does it as it loads q, which saves a rotary launch per layer.
    Kernel when Tq <= 16, no gradient is needed and the tensors are on CUDA (or the
    interpreter is on): fp32/bf16/fp16 in, fp32 accumulation, no host sync (CUDA-graph safe).
    Otherwise masked SDPA on CUDA or ``naive.sparse_attention`` on CPU (``query_chunk`` applies
    there only). ``kv_ready`` (a scheduling hint, ``naive.sparse_attention`` has the contract):
    the kernel reads the index and gathers its first block before it waits on the launch before.
    """
    if q.shape[1] > MAX_TQ or needs_grad(q, k, v) or not kernel_ok(q, k, v, idx):
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        if rope is not None:
            q = rotary(q, *rope)
        if q.is_cuda:
            S = k.shape[1]
            return masked_sdpa(q, k, v, lambda s, e: naive.index_mask(idx[:, s:e], S),
                               scale, query_chunk)
        return naive.sparse_attention(q, k, v, idx, scale, query_chunk)
    return sparse_attention_decode(q, k, v, idx, scale, rope=rope, kv_ready=kv_ready)
