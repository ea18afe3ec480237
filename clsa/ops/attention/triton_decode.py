"""Split-K flash-decoding for masked GQA attention (Triton), same API as ``naive.attention``.

Shape legend (as in naive.py)
    B batch, Tq queries, S key slots, Hq query heads, Hkv K/V heads, G = Hq // Hkv, D head dim.
    q        [B, Tq, Hq, D]        k, v [B, S, Hkv, D]        out [B, Tq, Hq, D]
    q_pos    [B, Tq] int           k_pos [B, S] int (-1 empty)  kv_start [B] int
    partials m, l [B * Hkv, M, NS] fp32 and acc [B * Hkv, M, NS, D] fp32, M = Tq * G rows, NS splits
    counters [>= B * Hkv] int32    one ticket counter per group, zero between launches

Kernel path (decode: Tq * G <= 64, no autograd, CUDA tensors or the Triton interpreter): one
launch of ``_attn_split_kernel``, grid (NS, B * Hkv). One program owns one K/V head of one
sequence (a group) and one contiguous chunk of slots. Its Tq * G query rows (all heads that share
the K/V head, all queries) form one [BM, BD] tile, so each K/V row is read once for the whole group.
  1. Phase 1 reads only k_pos (int, cheap) and finds the span of blocks holding a visible key;
     phase 2 runs branch-free (so the loads pipeline) online softmax over that span, loading only
     the K/V rows some query can see (masked loads: no bytes, zeros, garbage never leaks). So
     the K/V bytes read follow the live length even when a CUDA graph captured a large S.
  2. ``_write_group`` finishes in the same launch. NS == 1: the program normalises its fp32 state
     and writes out. NS > 1: it writes its (m, l, acc) partials and takes a ticket from the group's
     counter (acq_rel atomic); the program that draws the last ticket merges the NS partials of
     all M rows (``_merge_splits``), writes out in q's dtype and resets the counter to 0.
No host sync on this path (no ``.item()``, shapes only) and no memset (the counters clean
themselves), so it can be captured in a CUDA graph; the split count depends on shapes and the SM
count only. The counters are one buffer per device (``split_counters``): launches that use it
must not run concurrently on different streams.

Fallbacks (exactly the reference's math): autograd or many queries per row (prefill, training)
go to masked ``torch.nn.functional.scaled_dot_product_attention`` on CUDA (query-chunked, rows
with no visible key forced to zero) and to ``naive.attention`` elsewhere (CPU without the
interpreter). See README.md for the math.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from clsa.ops.attention import naive

LOG2E = 1.4426950408889634
MAX_ROWS = 64       # Tq * G handled by the kernel; beyond that the fallback runs
MAX_SPLITS = 64     # split-plan cap: a group's last program reads all NS partials alone
MERGE_REGS = 32     # fp32 registers a thread for one in-kernel merge step's [RB, BN, BD] tile
# Ticket counters allocated at least this many (256 KiB of int32) so that a CUDA-graph capture
# never has to grow the buffer: the launchers need B * Hkv (dense) or B * Tq * Hkv (sparse).
MIN_COUNTERS = 1 << 16
SPAN_VEC = tl.constexpr(2048)  # chunks of at most this many slots (block-padded) scan k_pos at once
NEG_INIT = tl.constexpr(-1.0e30)  # finite running max: no inf - inf anywhere, empty rows keep l = 0


@triton.jit
def _online_softmax_block(b_q, b_k, b_v, b_vis, b_mi, b_li, b_acc, qk_scale,
                          DOT_PRECISION: tl.constexpr):
    """Fold one block of keys into the running (max, sum, acc) of every query row.

    b_q [BM, BD], b_k / b_v [BS, BD], b_vis [BM, BS]; b_v must be finite (zero unused rows)."""
    b_sc = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PRECISION) * qk_scale  # [BM, BS]
    b_sc = tl.where(b_vis, b_sc, float("-inf"))
    b_mn = tl.maximum(b_mi, tl.max(b_sc, axis=1))  # [BM], finite (b_mi starts at NEG_INIT)
    b_p = tl.exp2(b_sc - b_mn[:, None])  # [BM, BS], exactly 0 where masked
    b_alpha = tl.exp2(b_mi - b_mn)  # [BM]
    b_li = b_li * b_alpha + tl.sum(b_p, axis=1)
    b_acc = b_acc * b_alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v,
                                              input_precision=DOT_PRECISION)  # [BM, BD]
    return b_mn, b_li, b_acc


@triton.jit
def _slots(p_kp, s_kps, o_s, S, HAS_KPOS: tl.constexpr):
    """[BS] int32 slot held by rows o_s (-1 past S); without k_pos a row holds its own index."""
    if HAS_KPOS:
        b_kp = tl.load(p_kp + o_s * s_kps, mask=o_s < S, other=-1).to(tl.int32)
    else:
        b_kp = tl.where(o_s < S, o_s, -1).to(tl.int32)
    return b_kp


@triton.jit
def _dense_step(b_q, p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S, i_s0, m_blk,
                b_qp, b_ks, b_lo, b_hi, window, own_row, b_mi, b_li, b_acc, qk_scale,
                D: tl.constexpr, BS: tl.constexpr, BD: tl.constexpr, HAS_KPOS: tl.constexpr,
                HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr, OWN_ROW: tl.constexpr):
    """Slots [i_s0, i_s0 + BS) of one K/V head (``_dense_load``), then one online-softmax step."""
    b_k, b_v, b_vis = _dense_load(p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S, i_s0, m_blk,
                                  b_qp, b_ks, b_lo, b_hi, window, own_row, BS, BD, D, HAS_KPOS,
                                  HAS_WINDOW, OWN_ROW)
    return _online_softmax_block(b_q, b_k, b_v, b_vis, b_mi, b_li, b_acc, qk_scale,
                                 DOT_PRECISION)


@triton.jit
def _dense_load(p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S, i_s0, m_blk,
                b_qp, b_ks, b_lo, b_hi, window, own_row, BS: tl.constexpr, BD: tl.constexpr,
                D: tl.constexpr, HAS_KPOS: tl.constexpr, HAS_WINDOW: tl.constexpr,
                OWN_ROW: tl.constexpr):
    """Slots [i_s0, i_s0 + BS) of one K/V head: (K, V, visibility [BM, BS]). Visibility comes from
    k_pos; K/V rows that no query can see are masked out of the loads (no bytes, zeros). ``m_blk``
    False turns the whole block off (the interpreter's stand-in for the span bounds). OWN_ROW: row
    ``own_row`` counts as empty (the ring row this launch writes; ``_own_row`` folds it in)."""
    o_s = (i_s0 + tl.arange(0, BS)).to(tl.int64)
    o_d = tl.arange(0, BD)
    b_kp = _slots(p_kp, s_kps, o_s, S, HAS_KPOS)  # [BS]
    b_kp = tl.where(m_blk, b_kp, -1)
    # [BM, BS] visibility: kv_start <= k_pos <= q_pos, k_pos >= 0, k_pos > q_pos - window
    if OWN_ROW:  # the ring row this launch writes: taken from k_new / v_new instead
        b_kp = tl.where(o_s == own_row, -1, b_kp)
    b_vis = (b_kp[None, :] >= b_ks) & (b_kp[None, :] <= b_qp[:, None]) & (b_kp[None, :] >= 0)
    if HAS_WINDOW:
        b_vis = b_vis & (b_kp[None, :] > b_qp[:, None] - window)
    m_kv = ((b_kp >= b_lo) & (b_kp <= b_hi))[:, None] & (o_d < D)[None, :]  # [BS, BD]
    b_k = tl.load(p_kb + o_s[:, None] * s_ks + o_d[None, :] * s_kd, mask=m_kv, other=0.)
    b_v = tl.load(p_vb + o_s[:, None] * s_vs + o_d[None, :] * s_vd, mask=m_kv, other=0.)
    return b_k, b_v, b_vis


@triton.jit
def _block_span(b_in, NBP: tl.constexpr, BS: tl.constexpr, CHUNK: tl.constexpr):
    """(first, last) block of a chunk scanned in one load: ``b_in`` [NBP * BS] int32 flags the
    slots to read (0 past the chunk); (CHUNK // BS, -1) when none is flagged."""
    b_any = tl.max(tl.reshape(b_in, [NBP, BS]), axis=1)  # [NBP]
    o_b = tl.arange(0, NBP)
    return (tl.min(tl.where(b_any > 0, o_b, CHUNK // BS), axis=0),
            tl.max(tl.where(b_any > 0, o_b, -1), axis=0))


@triton.jit
def _rotate_rows(b_x, p_partner, p_cos, p_sin, o_d, m_x, D: tl.constexpr):
    """Rotary (NeoX half-split) of the rows b_x [BM, BD] as they are loaded, in fp32, cast back to
    b_x's dtype (``ops.rotary``'s rounding): x_i cos_i - x_{i+D/2} sin_i in the first half,
    x_i cos_{i-D/2} + x_{i-D/2} sin_{i-D/2} in the second. p_partner points at each element's
    partner (i +- D/2); p_cos / p_sin [BM, 1] at each row's fp32 table of D/2 entries."""
    o_f = tl.where(o_d < D // 2, o_d, o_d - D // 2)[None, :]  # [1, BD] table column
    b_c = tl.load(p_cos + o_f, mask=m_x, other=0.)  # [BM, BD]
    b_s = tl.load(p_sin + o_f, mask=m_x, other=0.)
    b_p = tl.load(p_partner, mask=m_x, other=0.).to(tl.float32)
    b_p = tl.where((o_d < D // 2)[None, :], -b_p, b_p)
    return (b_x.to(tl.float32) * b_c + b_p * b_s).to(b_x.dtype)


@triton.jit
def _query_tile(p_q, p_cos, p_sin, s_qd, o_d, m_q, D: tl.constexpr, ROPE: tl.constexpr):
    """The [BM, BD] query tile at ``p_q``, rotated by the table rows at p_cos / p_sin with ROPE."""
    b_q = tl.load(p_q, mask=m_q, other=0.)
    if ROPE:
        b_q = _rotate_rows(b_q, p_q + (tl.where(o_d < D // 2, D // 2, -(D // 2)) * s_qd)[None, :],
                           p_cos, p_sin, o_d, m_q, D)
    return b_q


@triton.jit
def _fold_preloaded(b_k, b_v, b_vis, p_q, p_cos, p_sin, s_qd, o_d, m_q, b_mi, b_li, b_acc,
                    qk_scale, D: tl.constexpr, ROPE: tl.constexpr, DOT_PRECISION: tl.constexpr,
                    PDL: tl.constexpr):
    """After a block read before the wait (PRELOAD): wait for the launch before, read the query
    it wrote (``_query_tile``) and fold the block in. Returns (q, m, l, acc)."""
    pdl_enter(PDL)
    b_q = _query_tile(p_q, p_cos, p_sin, s_qd, o_d, m_q, D, ROPE)
    b_mi, b_li, b_acc = _online_softmax_block(b_q, b_k, b_v, b_vis, b_mi, b_li, b_acc, qk_scale,
                                              DOT_PRECISION)
    return b_q, b_mi, b_li, b_acc


@triton.jit
def _out_offsets(o_r, G: tl.constexpr, HQ: tl.constexpr, D: tl.constexpr):
    """Element offsets of group rows o_r (r = t * G + g: query t, head g of the group) from the
    group's first output row, in a contiguous [.., Tq, Hq, D] output."""
    return ((o_r // G) * HQ + o_r % G).to(tl.int64) * D


@triton.jit
def _merge_splits(p_out, m_part, l_part, acc_part, i_g,
                  G: tl.constexpr, HQ: tl.constexpr, M: tl.constexpr, D: tl.constexpr,
                  NS: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr):
    """Combine the NS partials of the M rows of group i_g and write them out:
    out = sum_n w_n acc_n / sum_n w_n l_n with w_n = exp2(m_n - max m), 0 where the sum is 0.

    RB rows and BN splits a step ([RB, BN, BD] tile); with NS > BN the running (max, sum, acc)
    is rescaled from one step to the next, as in the online softmax."""
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    # the group's partials: int64 bases, int32 offsets inside (M * NS * D <= 64 * 64 * D)
    p_mg = m_part + i_g.to(tl.int64) * (M * NS)
    p_lg = l_part + i_g.to(tl.int64) * (M * NS)
    p_ag = acc_part + i_g.to(tl.int64) * (M * NS * D)
    # unrolled (constexpr bounds): the loads of every step are issued before the first returns,
    # instead of one dependent L2 round trip a step
    for i_r0 in tl.static_range(0, M, RB):
        o_r = i_r0 + tl.arange(0, RB)
        m_r = o_r < M
        b_mx = tl.full([RB], NEG_INIT, dtype=tl.float32)
        b_l = tl.zeros([RB], dtype=tl.float32)
        b_o = tl.zeros([RB, BD], dtype=tl.float32)
        for i_n0 in tl.static_range(0, NS, BN):
            o_n = i_n0 + tl.arange(0, BN)
            o_p = o_r[:, None] * NS + o_n[None, :]  # [RB, BN]
            m_p = m_r[:, None] & (o_n < NS)[None, :]
            # written by other programs of this launch: read through L2 (.cg), never a stale L1
            b_m = tl.load(p_mg + o_p, mask=m_p, other=NEG_INIT, cache_modifier=".cg")  # [RB, BN]
            b_ln = tl.load(p_lg + o_p, mask=m_p, other=0., cache_modifier=".cg")  # [RB, BN]
            b_acc = tl.load(p_ag + o_p[:, :, None] * D + o_d[None, None, :],
                            mask=m_p[:, :, None] & m_d[None, None, :], other=0.,
                            cache_modifier=".cg")  # [RB, BN, BD]
            b_mn = tl.maximum(b_mx, tl.max(b_m, axis=1))  # [RB]
            b_a = tl.exp2(b_mx - b_mn)  # [RB], 1 when nothing was seen yet
            b_w = tl.exp2(b_m - b_mn[:, None])  # [RB, BN]
            b_l = b_l * b_a + tl.sum(b_w * b_ln, axis=1)
            b_o = b_o * b_a[:, None] + tl.sum(b_w[:, :, None] * b_acc, axis=1)  # [RB, BD]
            b_mx = b_mn
        b_o = tl.where(b_l[:, None] > 0, b_o / tl.where(b_l > 0, b_l, 1.0)[:, None], 0.)
        p_o = p_out + _out_offsets(o_r, G, HQ, D)[:, None] + o_d[None, :]
        tl.store(p_o, b_o.to(p_out.dtype.element_ty), mask=m_r[:, None] & m_d[None, :])


@triton.jit
def _write_group(b_mi, b_li, b_acc, p_out, m_part, l_part, acc_part, counters, i_g, i_s,
                 G: tl.constexpr, HQ: tl.constexpr, M: tl.constexpr, D: tl.constexpr,
                 NS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr,
                 RB: tl.constexpr):
    """Epilogue of split i_s of group i_g, whose M rows start at p_out (``_out_offsets``).

    NS == 1: normalise and write out. Otherwise write this split's partials
    (m, l [groups, M, NS], acc [groups, M, NS, D]; every split writes, even when it saw nothing),
    take a ticket from the group's counter; the split that draws the last one merges the group
    and sets the counter back to 0 for the next launch."""
    o_m = tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m_m = o_m < M
    m_d = o_d < D
    if NS == 1:
        b_o = tl.where(b_li[:, None] > 0, b_acc / tl.where(b_li > 0, b_li, 1.0)[:, None], 0.)
        p_o = p_out + _out_offsets(o_m, G, HQ, D)[:, None] + o_d[None, :]
        tl.store(p_o, b_o.to(p_out.dtype.element_ty), mask=m_m[:, None] & m_d[None, :])
    else:
        o_p = (i_g.to(tl.int64) * M + o_m) * NS + i_s  # [BM]
        tl.store(m_part + o_p, b_mi, mask=m_m)
        tl.store(l_part + o_p, b_li, mask=m_m)
        tl.store(acc_part + o_p[:, None] * D + o_d[None, :], b_acc,
                 mask=m_m[:, None] & m_d[None, :])
        # the barrier orders every thread's partial stores before the release; the acquire orders
        # the other splits' stores (all released before their tickets) before the merge's loads
        tl.debug_barrier()
        i_ticket = tl.atomic_add(counters + i_g, 1, sem="acq_rel", scope="gpu")
        if i_ticket == NS - 1:
            _merge_splits(p_out, m_part, l_part, acc_part, i_g, G, HQ, M, D, NS, BD, BN, RB)
            # every split of this launch has drawn its ticket: nothing else touches the counter
            tl.store(counters + i_g, 0)


@triton.jit
def _own_row(b_q, k, v, k_pos, q_pos, p_cos, p_sin, s_ks, s_kd, s_vs, s_vd, s_kps, s_nd, s_wd,
             p_kb, p_vb, p_kn, p_vn, own_row, b_qp, b_ks, i_s, i_bh, b_mi, b_li, b_acc, qk_scale,
             D: tl.constexpr, BD: tl.constexpr, ROPE: tl.constexpr):
    """The ring write fused into decode attention (one query a row): this step's K/V row of the
    group's head, at p_kn / p_vn (k rotated by the query's own tables with ROPE), joins the softmax
    of split 0, and split 0 writes it into ring row ``own_row`` = q_pos[0, 0] mod S (its position
    too, once a launch, through k_pos[0]). Every program left that row out of its scan (OWN_ROW),
    so no program reads it while it is being written, and the slot it held drops out of the
    window as ``ring_write`` drops it."""
    # one row: vectors and a reduction, no MMA tile (a [16, D] tile and its rotation cost the
    # launch its occupancy: 169 / 238 registers a thread at B = 1 / 8 in the sm_90 compile)
    o_d = tl.arange(0, BD)
    first = i_s == 0
    m_row = (o_d < D) & first
    b_k = tl.load(p_kn + o_d * s_nd, mask=m_row, other=0.)  # [BD]
    if ROPE:  # as ring_write: fp32 math, rounded to k's dtype
        o_f = tl.where(o_d < D // 2, o_d, o_d - D // 2)
        b_p = tl.load(p_kn + (o_d + tl.where(o_d < D // 2, D // 2, -(D // 2))) * s_nd,
                      mask=m_row, other=0.).to(tl.float32)
        b_p = tl.where(o_d < D // 2, -b_p, b_p)
        b_k = (b_k.to(tl.float32) * tl.load(p_cos + o_f, mask=m_row, other=0.)
               + b_p * tl.load(p_sin + o_f, mask=m_row, other=0.)).to(b_k.dtype)
    b_v = tl.load(p_vn + o_d * s_wd, mask=m_row, other=0.)  # [BD]
    # the key as attention reads it from the ring (its dtype), then fp32 math
    b_kf = b_k.to(k.dtype.element_ty).to(tl.float32)
    b_vf = b_v.to(v.dtype.element_ty).to(tl.float32)
    b_sc = tl.sum(b_q.to(tl.float32) * b_kf[None, :], axis=1) * qk_scale  # [BM]
    b_sc = tl.where((b_qp >= b_ks) & (b_qp >= 0) & first, b_sc, float("-inf"))
    b_mn = tl.maximum(b_mi, b_sc)
    b_pr = tl.exp2(b_sc - b_mn)  # [BM], 0 where invisible
    b_alpha = tl.exp2(b_mi - b_mn)
    b_li = b_li * b_alpha + b_pr
    b_acc = b_acc * b_alpha[:, None] + b_pr[:, None] * b_vf[None, :]
    tl.store(p_kb + own_row * s_ks + o_d * s_kd, b_k.to(k.dtype.element_ty), mask=m_row)
    tl.store(p_vb + own_row * s_vs + o_d * s_vd, b_v.to(v.dtype.element_ty), mask=m_row)
    tl.store(k_pos + own_row * s_kps, tl.load(q_pos).to(k_pos.dtype.element_ty),
             mask=first & (i_bh == 0))  # q_pos[0, 0]: the batch's shared slot
    return b_mn, b_li, b_acc


@triton.jit
def _attn_split_kernel(
    q, k, v, q_pos, k_pos, kv_start, out, m_part, l_part, acc_part, counters, cos, sin,
    k_new, v_new,
    s_qb, s_qt, s_qh, s_qd, s_cb, s_ct, s_nb, s_nh, s_nd, s_wb, s_wh, s_wd,
    s_kb, s_ks, s_kh, s_kd,
    s_vb, s_vs, s_vh, s_vd,
    s_qpb, s_qpt, s_kpb, s_kps,
    S, window, qk_scale,
    HKV: tl.constexpr, G: tl.constexpr, M: tl.constexpr, D: tl.constexpr, NS: tl.constexpr,
    CHUNK: tl.constexpr, BS: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
    BN: tl.constexpr, RB: tl.constexpr, NBP: tl.constexpr,
    HAS_KPOS: tl.constexpr, HAS_WINDOW: tl.constexpr, SKIP_EMPTY: tl.constexpr,
    DYN_SPAN: tl.constexpr, DOT_PRECISION: tl.constexpr, ROPE: tl.constexpr,
    PRELOAD: tl.constexpr, OWN_ROW: tl.constexpr, PDL: tl.constexpr,
):
    if not PRELOAD:
        pdl_enter(PDL)  # q (and, for the ring, this step's K/V row) come from the launches before
    i_s, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // HKV, i_bh % HKV
    i_b64 = i_b.to(tl.int64)

    # query rows r = t * G + g: query t, head i_h * G + g
    o_m = tl.arange(0, BM)
    o_d = tl.arange(0, BD)
    m_m = o_m < M
    m_d = o_d < D
    o_t = (o_m // G).to(tl.int64)
    o_hq = (i_h * G + o_m % G).to(tl.int64)

    p_q = q + i_b64 * s_qb + o_t[:, None] * s_qt + o_hq[:, None] * s_qh + o_d[None, :] * s_qd
    p_cs = i_b64 * s_cb + o_t[:, None] * s_ct  # [BM, 1] rotary table rows
    if not PRELOAD:
        b_q = _query_tile(p_q, cos + p_cs, sin + p_cs, s_qd, o_d, m_m[:, None] & m_d[None, :], D,
                          ROPE)
    # padded rows get q_pos = -1: no key is visible to them
    b_qp = tl.load(q_pos + i_b64 * s_qpb + o_t * s_qpt, mask=m_m, other=-1).to(tl.int32)  # [BM]
    b_ks = tl.load(kv_start + i_b).to(tl.int32)
    if not HAS_KPOS:
        # k_pos=None: every row is visible to every query (no q_pos, kv_start or window)
        b_qp = tl.where(m_m, 2147483647, -1)
        b_ks = b_ks * 0
    # [lo, hi]: the slots some row can see (exact for Tq = 1); it gates K/V loads row by row in
    # 1D, so the [BM, BS] mask is only needed for the scores
    b_hi = tl.max(b_qp, axis=0)
    b_lo = tl.maximum(b_ks, 0)
    own_row = -1
    if OWN_ROW:  # the ring row of this step's slot q_pos[0, 0] (floor mod, as ring_write)
        own_row = (tl.load(q_pos).to(tl.int64) % S + S) % S
    if HAS_WINDOW:
        b_lo = tl.maximum(b_lo, tl.min(tl.where(m_m, b_qp, 2147483647), axis=0) - window + 1)

    b_mi = tl.full([BM], NEG_INIT, dtype=tl.float32)
    b_li = tl.zeros([BM], dtype=tl.float32)
    b_acc = tl.zeros([BM, BD], dtype=tl.float32)

    p_kb = k + i_b64 * s_kb + i_h.to(tl.int64) * s_kh
    p_vb = v + i_b64 * s_vb + i_h.to(tl.int64) * s_vh
    p_kp = k_pos + i_b64 * s_kpb
    # phase 1 (int32 k_pos only, 4 bytes a slot): the span [i_first, i_last] of blocks that hold
    # a visible key. Blocks outside it (past the live length of a cache allocated for a CUDA
    # graph, before kv_start, outside the window) cost no K/V bytes and no compute.
    i_first = tl.full((), CHUNK // BS, tl.int32)
    i_last = tl.full((), -1, tl.int32)
    if SKIP_EMPTY and NBP * BS <= SPAN_VEC:
        # a short chunk (the top-k compact buffer, a window ring): every k_pos of the chunk in one
        # load, so the scan costs one round trip instead of one per block
        o_c = tl.arange(0, NBP * BS)
        o_s = tl.where(o_c < CHUNK, i_s * CHUNK + o_c, S).to(tl.int64)  # past the chunk: masked
        b_kp = _slots(p_kp, s_kps, o_s, S, HAS_KPOS)  # [NBP * BS]
        i_first, i_last = _block_span(((b_kp >= b_lo) & (b_kp <= b_hi)).to(tl.int32), NBP, BS,
                                      CHUNK)
    elif SKIP_EMPTY:
        for i_blk in range(0, CHUNK // BS):
            o_s = (i_s * CHUNK + i_blk * BS + tl.arange(0, BS)).to(tl.int64)
            b_kp = _slots(p_kp, s_kps, o_s, S, HAS_KPOS)  # [BS]
            b_any = tl.max(((b_kp >= b_lo) & (b_kp <= b_hi)).to(tl.int32), axis=0)
            i_first = tl.minimum(i_first, tl.where(b_any > 0, i_blk, CHUNK // BS))
            i_last = tl.maximum(i_last, tl.where(b_any > 0, i_blk, -1))
    else:
        i_first = i_first * 0
        i_last = i_last * 0 + CHUNK // BS - 1
    i_from = i_first
    if PRELOAD:
        # K/V and k_pos were written before the previous launch began (``kv_ready``): the span's
        # first block is read while that launch finishes; then the wait, and q, which it wrote
        b_k, b_v, b_vis = _dense_load(p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S,
                                      i_s * CHUNK + i_first * BS, i_first <= i_last, b_qp, b_ks,
                                      b_lo, b_hi, window, own_row, BS, BD, D, HAS_KPOS,
                                      HAS_WINDOW, OWN_ROW)
        b_q, b_mi, b_li, b_acc = _fold_preloaded(
            b_k, b_v, b_vis, p_q, cos + p_cs, sin + p_cs, s_qd, o_d, m_m[:, None] & m_d[None, :],
            b_mi, b_li, b_acc, qk_scale, D, ROPE, DOT_PRECISION, PDL)
        i_from = i_first + 1
    if OWN_ROW:
        b_mi, b_li, b_acc = _own_row(b_q, k, v, k_pos, q_pos, cos + i_b64 * s_cb,
                                     sin + i_b64 * s_cb, s_ks, s_kd, s_vs, s_vd, s_kps, s_nd, s_wd,
                                     p_kb, p_vb, k_new + i_b64 * s_nb + i_h * s_nh,
                                     v_new + i_b64 * s_wb + i_h * s_wh, own_row, b_qp, b_ks, i_s,
                                     i_bh, b_mi, b_li, b_acc, qk_scale, D, BD, ROPE)
    # phase 2: branch-free flash-decoding over the span, so the compiler can software-pipeline
    # the loads; rows no query can see are masked out of the K/V loads (no bytes, zeros).
    # The interpreter cannot take tensor loop bounds: there (DYN_SPAN=False) the loop covers
    # every block and the span becomes a mask, so CPU tests still check the span is right.
    if DYN_SPAN:
        for i_blk in range(i_from, i_last + 1):
            b_mi, b_li, b_acc = _dense_step(
                b_q, p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S, i_s * CHUNK + i_blk * BS,
                True, b_qp, b_ks, b_lo, b_hi, window, own_row, b_mi, b_li, b_acc, qk_scale,
                D, BS, BD, HAS_KPOS, HAS_WINDOW, DOT_PRECISION, OWN_ROW)
    else:  # up to NBP >= CHUNK / BS blocks: a span reaching past the chunk would count twice
        for i_blk in range(0, NBP):
            b_mi, b_li, b_acc = _dense_step(
                b_q, p_kb, p_vb, p_kp, s_ks, s_kd, s_vs, s_vd, s_kps, S, i_s * CHUNK + i_blk * BS,
                (i_blk >= i_from) & (i_blk <= i_last), b_qp, b_ks, b_lo, b_hi, window, own_row,
                b_mi, b_li, b_acc, qk_scale, D, BS, BD, HAS_KPOS, HAS_WINDOW, DOT_PRECISION,
                OWN_ROW)
    # out is a fresh contiguous [B, Tq, Hq, D]: the group's rows start at (b, 0, i_h * G)
    p_out = out + (i_b64 * (M // G) * HKV * G + i_h * G) * D
    _write_group(b_mi, b_li, b_acc, p_out, m_part, l_part, acc_part, counters, i_bh, i_s,
                 G, HKV * G, M, D, NS, BM, BD, BN, RB)


_SM_COUNT: dict[int, int] = {}


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 2  # interpreter: keep grids tiny
    i = device.index if device.index is not None else torch.cuda.current_device()
    if i not in _SM_COUNT:
        _SM_COUNT[i] = torch.cuda.get_device_properties(i).multi_processor_count
    return _SM_COUNT[i]


# Spans of at most this many blocks (the top-k compact buffer, a sliding-window ring) are "short":
# up to SHORT_SPLITS splits while the grid stays within two programs per SM, up to
# SHORT_SPLITS_BUSY while it stays within four.
SHORT_BLOCKS = 64
SHORT_SPLITS = 16
SHORT_SPLITS_BUSY = 8
# Long spans split into chunks of at least this many blocks (2048 slots of 64) beyond one wave.
LONG_CHUNK_BLOCKS = 32


def split_plan(n_groups: int, S: int, block: int, device: torch.device,
               max_splits: int = MAX_SPLITS) -> tuple[int, int]:
    """(chunk, num_splits): slots per program and programs per group.

    Long spans take as many splits as keep chunks of at least LONG_CHUNK_BLOCKS blocks (up to
    ``max_splits``), and at least ~4 programs per SM (whole waves: a split count rounded up would
    leave a second, nearly empty wave). Many waves of short programs balance themselves across the
    SMs; one exact wave of long ones does not. H200, 128K, yoco-3b heads (session 10,
    ``benchmarks/results/2026-12-04-h200-s10/``): B = 4 took 912 us with 17 splits (the old
    round-up rule), 609 with 16 and 510 with 64 (SDPA 493); B = 8 1696 with 9, 1205 with 8 and
    999 with 64 (SDPA 971). Short spans (at most SHORT_BLOCKS blocks: 2048 top-k slots, a 1024-slot
    window) take the largest power-of-2 split count up to SHORT_SPLITS that keeps the grid within
    two programs per SM, or up to SHORT_SPLITS_BUSY within four per SM: there a program's fixed
    cost (query load, partial write, ticket, the last program's merge of NS partials) outweighs
    its few K/V blocks. On the H100 this plan took a stack of 13 launches over the 2048-slot
    compact buffer from 150 to 112 us at B = 1 and from 195 to 179 us at B = 4, and 13 window-ring
    launches from 178 to 153 us at B = 4 (``benchmarks/results/2026-11-25-h100/session6/splits/``).
    The four-per-SM clause is from the H200 at B = 8 (8 splits instead of 4): compact 346 -> 302
    us, ring 209 -> 184 us; at B = 4, 16 splits lost to 8 (177 vs 168 us, 161 vs 139 us)
    (``benchmarks/results/2026-12-03-h200/splits/``).
    Depends on shapes and the SM count only (CUDA-graph safe); chunk is a multiple of ``block``.
    """
    n_blocks, sms = triton.cdiv(S, block), _num_sms(device)
    if n_blocks <= SHORT_BLOCKS:
        want = 1
        while want * 2 <= min(SHORT_SPLITS, max_splits, n_blocks) and (
                want * 2 * n_groups <= 2 * sms
                or (want * 2 <= SHORT_SPLITS_BUSY and want * 2 * n_groups <= 4 * sms)):
            want *= 2
    else:
        want = max(1, min(max_splits, max(4 * sms // n_groups, n_blocks // LONG_CHUNK_BLOCKS),
                          n_blocks))
    chunk = triton.cdiv(n_blocks, want) * block
    return chunk, triton.cdiv(S, chunk)


# Programmatic dependent launch (sm_90+) for kernels that opt in (``use_pdl``); CLSA_PDL=0 turns it
# off everywhere, for A/B timing (benchmarks flip ``PDL`` at run time).
PDL = os.environ.get("CLSA_PDL", "1") == "1"


def use_pdl() -> bool:
    """Launch with programmatic dependent launch: on unless CLSA_PDL=0; never in the interpreter
    (the grid-dependency instructions are PTX)."""
    return PDL and not interpreting()


@triton.jit
def pdl_enter(PDL: tl.constexpr):
    """First statement of a decode kernel launched with ``launch_pdl=use_pdl()`` that reads what
    the launch before it wrote: wait for that launch (its writes are then visible), then let the
    next launch be scheduled. The next launch may read only what no running kernel writes (the
    projections' weights) before its own wait, so triggering it this early is safe; it lets the
    next projection stream its first weight tile while this kernel runs. No-op when PDL is off."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


def interpreting() -> bool:
    """Kernels run in Triton's CPU interpreter (read at import by triton.jit, as here)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_ok(*tensors: torch.Tensor | None) -> bool:
    """True when Triton can run on these tensors (None skipped): CUDA, or CPU under
    TRITON_INTERPRET=1."""
    tensors = tuple(t for t in tensors if t is not None)
    if all(t.is_cuda for t in tensors):
        return True
    return interpreting() and not any(t.is_cuda for t in tensors)


def needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def default_tiles(dtype: torch.dtype) -> tuple[int, int]:
    """(slots per block, warps): (64, 4) for 16-bit inputs, (32, 8) for fp32.

    From sm_90 compiles of the decode shape (G = 3, D = 128): 16-bit at 106-126 registers/thread
    (126 with the in-kernel merge of 64 splits) lets 4 programs share an SM, matching the
    ~4 programs/SM grid of ``split_plan``; fp32 spills at 4 warps. Tests force other tilings
    through the launchers' arguments. The interpreter always takes 64-slot blocks: fewer, larger
    numpy steps."""
    return (32, 8) if dtype == torch.float32 and not interpreting() else (64, 4)


# A short-span launch of at most two programs per SM reads blocks of up to this many slots with 8
# warps (``decode_tiling``).
WIDE_BLOCK = 128


def decode_tiling(n_groups: int, S: int, dtype: torch.dtype,
                  device: torch.device) -> tuple[int, int, int, int]:
    """(block_s, num_warps, chunk, NS) of a decode launch over ``S`` slots for ``n_groups``
    groups: ``default_tiles``, then ``split_plan``.

    One exception, for 16-bit inputs: a short span (the compact top-k buffer, a window ring) whose
    grid stays within two programs per SM reads blocks of min(chunk, WIDE_BLOCK) slots with 8
    warps (a chunk of more than WIDE_BLOCK slots only if it stays whole blocks). On the
    yoco-3b shape that is B <= 4: at B = 1 the compact buffer's 16 chunks of 128
    slots are one block each and the ring's chunks of 64 too; at B = 4 the compact chunks of 256
    take two blocks. H200 graph profiles of the decode step at 128K (session 10): the step's
    critical path went 2011 -> 1981 us at B = 1 (cross-layer attention 13.3 -> 10.6 us a layer)
    and 2286 -> 2231 us at B = 4. At B = 8 (four programs per SM) these tiles lost by 4%
    (``benchmarks/results/2026-12-04-h200-s10/``)."""
    block, warps = default_tiles(dtype)
    chunk, NS = split_plan(n_groups, S, block, device)
    if (dtype != torch.float32 and triton.cdiv(S, block) <= SHORT_BLOCKS
            and NS * n_groups <= 2 * _num_sms(device)):
        if chunk <= WIDE_BLOCK or chunk % WIDE_BLOCK == 0:  # the chunk stays whole blocks
            block, warps = min(chunk, WIDE_BLOCK), 8
    return block, warps, chunk, NS


def launch_plan(n_groups: int, S: int, dtype: torch.dtype, device: torch.device,
                block_s: int | None = None, chunk: int | None = None) -> tuple[int, int, int, int]:
    """(block_s, num_warps, chunk, NS) of a launch (S >= 1): ``decode_tiling`` unless the caller
    forces the block or the chunk (tests, sweeps); then ``default_tiles`` fills in the rest."""
    if block_s is None and chunk is None:
        return decode_tiling(n_groups, S, dtype, device)
    block, warps = default_tiles(dtype)
    block_s = block if block_s is None else block_s
    if chunk is None:
        return (block_s, warps, *split_plan(n_groups, S, block_s, device))
    if chunk % block_s:
        raise ValueError(f"chunk={chunk} must be a multiple of block_s={block_s}")
    NS = triton.cdiv(S, chunk)
    if NS > MAX_SPLITS:
        raise ValueError(f"{NS} splits > {MAX_SPLITS}")
    return block_s, warps, chunk, NS


def preload_first_block(kv_ready: bool, chunk: int, block_s: int) -> bool:
    """Read the first K/V block before the PDL wait (the kernels' PRELOAD): when the caller says
    the K/V are ready and a program's chunk is that one block. The block's tiles stay in
    registers across the wait and the query load: that took the yoco-3b launches from 76-124 to
    109-157 registers a thread (sm_90 compile report), so a multi-block launch that relied on two
    programs per SM (or four, with 64-slot blocks) lost its occupancy. H200 decode-step spans at
    128K (session 11, ``benchmarks/results/2026-12-04-h200-s11/``), with every cross layer after the
    first preloading: B = 1 (one 128-slot block a program) 1980 -> 1951 us, B = 2 (one) 2091 ->
    2061, B = 4 (two) 2222 -> 2275, B = 8 (four 64-slot blocks) 2492 -> 2536; the dense YOCO
    step (32 blocks a program) 3.59 -> 3.98 ms at B = 1."""
    return kv_ready and chunk == block_s


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs must not silently use tf32 (the fp32 tests hold 1e-4); ignored for bf16/fp16
    return "ieee" if dtype == torch.float32 else "tf32"


_COUNTERS: dict[tuple[str, torch.device], torch.Tensor] = {}  # (purpose, device) -> zeros
_RETIRED: list[torch.Tensor] = []  # outgrown buffers: graphs captured on them stay valid


def zeroed_int32(n: int, device: torch.device, purpose: str = "split counters") -> torch.Tensor:
    """A device's persistent int32 buffer for ``purpose`` (at least ``n`` entries), all zero
    between launches: every kernel that uses one leaves it zeroed (ticket counters reset by the
    program that draws the last ticket, the top-k workspace by its pass 3), so no memset is
    launched.

    Grown (zeros, a power of 2, at least ``MIN_COUNTERS``) when a launch needs more; an outgrown
    buffer is kept alive, since a CUDA graph captured earlier may still point at it. Growing
    inside a capture is refused (the zero fill would only run at replay): warm up first, as any
    Triton launch needs for its compile anyway. One buffer per purpose and device: launches on
    concurrently running streams would share it, so keep the decode kernels on one stream."""
    if device.type == "cuda" and device.index is None:  # one key per GPU: "cuda" is "cuda:i"
        device = torch.device("cuda", torch.cuda.current_device())
    buf = _COUNTERS.get((purpose, device))
    if buf is None or buf.numel() < n:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"{purpose}: {n} entries > {0 if buf is None else buf.numel()} "
                               f"allocated, inside a CUDA graph capture; run the same shapes "
                               f"once before capturing")
        if buf is not None:
            _RETIRED.append(buf)
        buf = torch.zeros(max(MIN_COUNTERS, triton.next_power_of_2(n)), dtype=torch.int32,
                          device=device)
        _COUNTERS[(purpose, device)] = buf
    return buf


def split_counters(n_groups: int, device: torch.device) -> torch.Tensor:
    """The ticket counters of split launches (at least ``n_groups``; ``zeroed_int32``): shared by
    the attention kernels and the split-K projections, which run one after another on a stream
    and each reset the counters they drew from."""
    return zeroed_int32(n_groups, device)


def merge_tiles(M: int, NS: int, D: int, num_warps: int) -> dict:
    """Compile-time tiling of the in-kernel merge: RB rows and BN splits a step, a [RB, BN, BD]
    fp32 tile of at most MERGE_REGS registers a thread. sm_90 compiles of the decode shape (G=3,
    D=128, bf16, 64-slot blocks, 4 warps, NS=64) take 124-126 registers, no spills, so 4 programs
    still share an SM (<= 128); a 64-register tile took 137-143 (3 programs an SM)."""
    BD = max(16, triton.next_power_of_2(D))
    tile = MERGE_REGS * 32 * num_warps
    BN = max(1, min(triton.next_power_of_2(NS), tile // BD))
    RB = max(1, min(triton.next_power_of_2(M), tile // (BN * BD)))
    return dict(BN=BN, RB=RB)


def tile_meta(Hkv: int, G: int, M: int, D: int, NS: int, chunk: int, block_s: int,
              num_warps: int) -> dict:
    """The shape constexprs of ``_attn_split_kernel`` for a launch (the launcher and the sm_90
    compile report both take them from here)."""
    return dict(HKV=Hkv, G=G, M=M, D=D, NS=NS, CHUNK=chunk, BS=block_s,
                BM=max(16, triton.next_power_of_2(M)), BD=max(16, triton.next_power_of_2(D)),
                NBP=triton.next_power_of_2(chunk // block_s), **merge_tiles(M, NS, D, num_warps))


def split_scratch(n_groups: int, M: int, NS: int, D: int, out: torch.Tensor):
    """(m_part, l_part, acc_part, counters) of one launch. NS == 1 needs none of them: ``out``
    stands in for the pointers the kernel then never reads."""
    if NS == 1:
        return out, out, out, out
    f32 = dict(dtype=torch.float32, device=out.device)
    return (torch.empty(n_groups, M, NS, **f32), torch.empty(n_groups, M, NS, **f32),
            torch.empty(n_groups, M, NS, D, **f32), split_counters(n_groups, out.device))


def masked_sdpa(q, k, v, mask_fn, scale: float, query_chunk: int):
    """SDPA over a boolean mask from ``mask_fn(start, stop) -> [B, C, S]``; rows that see no key
    return zeros (the reference's rule). Differentiable; used for the cases the kernels skip."""
    B, Tq, Hq, D = q.shape
    G = Hq // k.shape[2]
    kt = k.transpose(1, 2).repeat_interleave(G, dim=1)  # [B, Hq, S, D]
    vt = v.transpose(1, 2).repeat_interleave(G, dim=1)
    outs = []
    for s in range(0, Tq, query_chunk):
        m = mask_fn(s, min(Tq, s + query_chunk))  # [B, C, S]
        seen = m.any(-1)  # [B, C]
        # a fully masked row would give NaN (and NaN gradients); unmask it, then zero its output
        m = m | ~seen[..., None]
        o = torch.nn.functional.scaled_dot_product_attention(
            q[:, s:s + query_chunk].transpose(1, 2), kt, vt, attn_mask=m[:, None], scale=scale)
        o = o.transpose(1, 2)  # [B, C, Hq, D]
        outs.append(torch.where(seen[:, :, None, None], o, torch.zeros((), dtype=o.dtype,
                                                                         device=o.device)))
    return torch.cat(outs, dim=1)


def _fallback(q, k, v, q_pos, k_pos, kv_start, window, scale, query_chunk, ring=None):
    if q.is_cuda and not needs_grad(q, k, v):  # prefill: stock SDPA (flash when plainly causal)
        from clsa.ops.attention import stock
        return stock.attention(q, k, v, q_pos, k_pos, kv_start, window, scale, max(query_chunk, 1024),
                               ring)
    if q.is_cuda and k_pos is None:
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale,
            enable_gqa=True).transpose(1, 2)
    if q.is_cuda:
        return masked_sdpa(
            q, k, v, lambda s, e: naive.visible_mask(q_pos[:, s:e], k_pos, kv_start, window),
            scale, query_chunk)
    return naive.attention(q, k, v, q_pos, k_pos, kv_start, window, scale, query_chunk)


def attention_decode(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
                     scale: float | None = None, block_s: int | None = None,
                     chunk: int | None = None, skip_empty: bool = True,
                     num_warps: int | None = None, num_stages: int = 2, rope=None,
                     kv_ready: bool = False, preload: bool | None = None, new_kv=None):
    """The kernel launcher (no fallback). ``chunk`` (a multiple of ``block_s``) overrides the split
    plan; tests use it to force several blocks per split. ``rope`` = (cos, sin) [B, Tq, D/2]:
    rotate q as it is loaded (as in ``attention``). ``kv_ready`` (as in ``attention``) allows the
    first K/V block to be read before the wait; ``preload_first_block`` decides, ``preload``
    True / False forces it (tests). ``new_kv`` = (k, v) [B, 1, Hkv, D]: k, v and k_pos are a
    ring that this launch writes this step's row into (``ring_attention``)."""
    B, Tq, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    if Hq % Hkv:
        raise ValueError(f"Hq={Hq} must be a multiple of Hkv={Hkv}")
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k {tuple(k.shape)} / v {tuple(v.shape)} do not match q {tuple(q.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if (tuple(q_pos.shape) != (B, Tq) or tuple(kv_start.shape) != (B,)
            or (k_pos is not None and tuple(k_pos.shape) != (B, S))):
        raise ValueError("q_pos [B, Tq], k_pos [B, S] (or None), kv_start [B] expected")
    cos, sin = _tables(rope, q)
    G = Hq // Hkv
    M = Tq * G
    if M > MAX_ROWS:
        raise ValueError(f"Tq * Hq / Hkv = {M} > {MAX_ROWS}: use attention(), which falls back")
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    BM = max(16, triton.next_power_of_2(M))
    out = torch.empty(B, Tq, Hq, D, dtype=q.dtype, device=q.device)
    if S == 0:
        return out.zero_()
    block_s, warps, chunk, NS = launch_plan(B * Hkv, S, q.dtype, q.device, block_s, chunk)
    # more rows than one MMA tile (many queries per row) need more warps to stay unspilled
    num_warps = (warps if BM <= 16 else 8) if num_warps is None else num_warps
    m_part, l_part, acc_part, counters = split_scratch(B * Hkv, M, NS, D, out)
    has_kpos = k_pos is not None
    if not has_kpos:  # every row visible: the kernel never reads k_pos, q_pos or the window
        k_pos, window = q_pos, None
    k_new, v_new = (q, q) if new_kv is None else new_kv
    _attn_split_kernel[(NS, B * Hkv)](
        q, k, v, q_pos, k_pos, kv_start, out, m_part, l_part, acc_part, counters, cos, sin,
        k_new, v_new, *q.stride(), *cos.stride()[:2], k_new.stride(0), k_new.stride(2),
        k_new.stride(3), v_new.stride(0), v_new.stride(2), v_new.stride(3),
        *k.stride(), *v.stride(), *q_pos.stride(),
        *(k_pos.stride() if has_kpos else (0, 0)),
        S, 0 if window is None else int(window), scale * LOG2E,
        **tile_meta(Hkv, G, M, D, NS, chunk, block_s, num_warps),
        HAS_KPOS=has_kpos, HAS_WINDOW=window is not None, SKIP_EMPTY=skip_empty,
        DYN_SPAN=not interpreting(),
        DOT_PRECISION=dot_precision(q.dtype), ROPE=rope is not None,
        PRELOAD=preload_first_block(kv_ready, chunk, block_s) if preload is None else preload,
        OWN_ROW=new_kv is not None, PDL=use_pdl(), num_warps=num_warps, num_stages=num_stages,
        launch_pdl=use_pdl(),
    )
    return out


def _tables(rope, q):
    """(cos, sin) of ``rope`` as fp32 [B, Tq, D/2] tensors the kernel can index (checked); without
    rope, q stands in for the two pointers, which the kernel then never reads."""
    if rope is None:
        return q, q
    cos, sin = rope
    B, Tq, _, D = q.shape
    want = (B, Tq, D // 2)
    if D % 2 or tuple(cos.shape) != want or tuple(sin.shape) != want:
        raise ValueError(f"rope tables must be (cos, sin) of shape [B, Tq, D/2] = {list(want)} for "
                         f"an even head dim, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    cos = cos.float().contiguous()
    return cos, sin.float().contiguous()


def attention(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
              scale: float | None = None, query_chunk: int = 256, ring: int | None = None,
              rope=None, kv_ready: bool = False):
    """Masked GQA attention; same arguments, shapes and result as ``naive.attention``.

    q [B, Tq, Hq, D]; k, v [B, S, Hkv, D]; q_pos [B, Tq]; k_pos [B, S] (-1 empty); kv_start [B].
    A key is visible iff kv_start <= k_pos <= q_pos, k_pos >= 0 and (with a window W)
    k_pos > q_pos - W; a query with no visible key returns zeros. ``k_pos=None`` means every key
    row is visible to every query (q_pos, kv_start and window are then not read).
    ``rope`` = (cos, sin) fp32 [B, Tq, D/2]: q is first rotated by them (``ops.rotary``, NeoX
    layout); the kernel does it as it loads q, which saves a launch per layer at decode.

    Runs the split-K decode kernel when Tq * Hq / Hkv <= 64, no gradient is needed and the
    tensors are on CUDA (or the Triton interpreter is on). Inputs fp32/bf16/fp16, fp32
    accumulation, output in q's dtype; no host sync, so CUDA-graph capturable. Otherwise (autograd,
    prefill/training sized Tq) it computes the same thing with masked SDPA on CUDA, or with
    ``naive.attention`` on CPU. ``query_chunk`` only matters on those fallbacks.
    ``kv_ready`` (a scheduling hint, ``naive.attention`` has the contract): the kernel reads
    k_pos and its first K/V block before it waits on the launch before it.
    """
    G = q.shape[2] // k.shape[2]
    if (q.shape[1] * G > MAX_ROWS or needs_grad(q, k, v)
            or not kernel_ok(q, k, v, q_pos, k_pos, kv_start)):
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        if rope is not None:
            from clsa.ops.rotary.triton_rotary import rotary  # deferred: it imports this module
            q = rotary(q, *rope)
        return _fallback(q, k, v, q_pos, k_pos, kv_start, window, scale, query_chunk, ring)
    return attention_decode(q, k, v, q_pos, k_pos, kv_start, window, scale, rope=rope,
                            kv_ready=kv_ready)
