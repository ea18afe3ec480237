"""Indexer scoring and top-k selection in Triton (same API as ``naive.py``): score every live slot
once, radix-select the k-th largest score per query with 8-bit digits, then compact the winners.

Shape legend
    q        [B, Tq, Hi, Di]   indexer queries (Hi indexer heads), fp32 / bf16 / fp16
    k        [B, S, Di]        indexer keys (any batch / slot strides, Di contiguous); int8 when
                               k_scale is given
    k_scale  [B, S] fp32       per-slot scale of 8-bit keys (any batch stride, slots contiguous)
    w        [B, Tq, Hi]       per-head weights; None means 1 for every head
    q_pos    [B, Tq] int       slot of each query; kv_start [B] int, first valid slot
    scores   [B, Tq, S] fp32   -inf where the slot is not visible (kv_start <= s <= q_pos visible)
    idx      [B, Tq, K] int32  selected slots, valid first (in no particular order), -1 after

One "row" is one query (r = b * Tq + t). The top-k path is three launches, each on a grid
(B * Tq, chunks of the row), sharing a small per-row workspace that is zero between calls (pass 3
zeroes what it used, so no memset is launched); passes 2 and 3 are launched early
(programmatic dependent launch, sm_90) and wait on the device for the pass before:
    1. ``_score_hist_kernel``  streams its chunk's keys once (pipelined tiles), writes fp32 scores,
                               and adds its 256-bin histogram of key bits 31..24 to the row's
    2. ``_bin_kernel``         finds the row's threshold bin b1 and histograms bits 23..16 of
                               the slots inside it (no output: no atomic to wait on)
    3. ``_gather_kernel``      finds the threshold bin b2 inside b1; writes every slot above b2
                               (above b1 too), gathers the slots inside b2 as candidates; the
                               row's last program resolves the remaining 16 bits over the
                               candidates alone
A row with at most K visible slots skips 1 and 3 (2 writes its visible slots and the -1 padding).
8-bit keys: int8 tiles are loaded (half the bytes); with a 16-bit query they meet the query's
two int8 parts on the int8 tensor cores (``_split_query``), with an fp32 query they convert exactly
to fp32; the [BS] score tile is multiplied by the slots' k_scale.
Histograms are summed with one atomic per non-empty bin per program and output positions are
claimed with one atomic per program: no per-element global atomics. No host sync; scratch comes
from ``torch.empty`` per call and the workspace from a per-device buffer, so a CUDA graph can
capture it.
The math and the design are in README.md.

Falls back to the naive reference for: more than ``MAX_TQ`` queries per sequence (prefill,
distillation: bmm + torch.topk is the right tool there), autograd (``indexer_scores`` on tensors
that require grad), and tensors Triton cannot run on (CPU without TRITON_INTERPRET=1).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import (kernel_ok, needs_grad, pdl_enter, use_pdl,
                                              zeroed_int32)
from clsa.ops.indexer_topk import naive

MAX_TQ = 16

# Per-row int32 workspace, zero between calls (``zeroed_int32``):
#   hist of key bits 31..24 [256] | hist of bits 23..16 inside bin b1 [256] | 3 counters
_OFF_H1 = tl.constexpr(256)
_OFF_WIN = tl.constexpr(512)   # slots written to the output so far (certain winners)
_OFF_CAND = tl.constexpr(513)  # candidates gathered (slots inside bin b2)
_OFF_DONE = tl.constexpr(514)  # gather programs finished
_WS = 520
# Candidates kept per row for the last step; a row whose bin b2 holds more (massive ties) is
# resolved from its full score row instead (correct, slower).
DEFAULT_CAP = 16384

_SM_COUNT: dict[int, int] = {}


@triton.jit
def _visible_range(q_pos, kv_start, i_r, Tq, S):
    """[lo, hi) of the slots query row i_r may see, clipped to [0, S); hi >= lo."""
    lo = tl.maximum(tl.load(kv_start + i_r // Tq).to(tl.int32), 0)
    hi = tl.minimum(tl.load(q_pos + i_r).to(tl.int32) + 1, S)
    return lo, tl.maximum(hi, lo)


@triton.jit
def _sortable_key(b_s):
    """fp32 -> uint32 whose unsigned order is the float order (-0.0 folded onto +0.0)."""
    b_u = b_s.to(tl.uint32, bitcast=True)
    b_u = tl.where(b_s == 0.0, tl.zeros_like(b_u), b_u)
    # negatives: flip all bits (larger magnitude -> smaller key); positives: set the sign bit
    return tl.where(b_u >= 0x80000000, b_u ^ 0xFFFFFFFF, b_u | 0x80000000)


@triton.jit
def _pick_bin(b_h, need):
    """The bin of the ``need``-th largest key in a 256-bin histogram ``b_h`` (needs
    1 <= need <= sum): (bin, keys in higher bins, keys in the bin)."""
    o_b = tl.arange(0, 256)
    b_ge = tl.sum(b_h, 0) - tl.cumsum(b_h, 0) + b_h  # [256] keys with digit >= b
    i_bin = tl.max(tl.where(b_ge >= need, o_b, -1), 0)
    n_gt = tl.sum(tl.where(o_b > i_bin, b_h, 0), 0)
    n_bin = tl.sum(tl.where(o_b == i_bin, b_h, 0), 0)
    return i_bin, n_gt, n_bin


@triton.jit
def _claim(p_cnt, m):
    """Output positions of the set lanes of ``m``: a base claimed from the counter ``*p_cnt`` with
    one atomic for the whole tile, plus the lane's rank."""
    b_rank = tl.cumsum(m.to(tl.int32), 0)  # [BLOCK]
    n = tl.sum(m.to(tl.int32), 0)
    base = tl.atomic_add(p_cnt, n, mask=n > 0, sem="relaxed")
    return base + b_rank - 1


@triton.jit
def _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d):
    p_k = k_row + o_s[:, None].to(tl.int64) * stride_ks + o_d[None, :]
    return tl.load(p_k, mask=m_s[:, None] & m_d[None, :], other=0.)  # [BS, DP]


@triton.jit
def _tile_scores(b_k, b_q, b_ql, b_w, ks_row, o_s, m_s, RELU: tl.constexpr, IEEE: tl.constexpr,
                 HAS_KS: tl.constexpr, I8DOT: tl.constexpr):
    """Scores of BS slots: sum_h w_h * f(q_h . k), the scale folded into w. 8-bit keys with a
    16-bit query (I8DOT): the int8 tile meets the query's two int8 parts (``_split_query``) on the
    int8 tensor cores in exact int32 sums, q_h . k = s1_h * (hi_h . k + lo_h . k / 254), with s1_h
    folded into w. 8-bit keys with an fp32 query: the tile converts exactly to fp32. Either way
    the slots' k_scale (> 0, so it commutes with the relu) multiplies the [BS] result. ``b_ql``
    is only read with I8DOT."""
    if I8DOT:
        b_dot = tl.dot(b_k, b_q, out_dtype=tl.int32).to(tl.float32)  # [BS, HP]
        b_dot += tl.dot(b_k, b_ql, out_dtype=tl.int32).to(tl.float32) * (1. / 254.)
    elif IEEE:
        b_dot = tl.dot(b_k.to(tl.float32), b_q, input_precision="tf32x3")  # [BS, HP]
    else:
        b_dot = tl.dot(b_k.to(b_q.dtype), b_q)  # [BS, HP] fp32 accumulate
    if RELU:
        b_dot = tl.maximum(b_dot, 0.)
    b_s = tl.sum(b_dot * b_w[None, :], 1)  # [BS]
    if HAS_KS:
        b_s = b_s * tl.load(ks_row + o_s, mask=m_s, other=0.)
    return b_s


@triton.jit
def _split_query(b_q):
    """A [DP, HP] query tile as two int8 parts per head: q ~= s1 * (hi + lo / 254) with
    s1 = max |q_h| / 127 (1 for an all-zero head), so |q - that| <= s1 / 508. ``quant.split_query``
    is the same in PyTorch. Returns hi, lo (int8 [DP, HP]) and s1 [HP]."""
    b_f = b_q.to(tl.float32)
    b_s1 = tl.div_rn(tl.max(tl.abs(b_f), 0), 127.)
    b_s1 = tl.where(b_s1 > 0., b_s1, 1.)
    b_x = tl.div_rn(b_f, b_s1[None, :])
    b_hi = tl.minimum(tl.maximum(tl.floor(b_x + 0.5), -127.), 127.)
    b_lo = tl.minimum(tl.maximum(tl.floor((b_x - b_hi) * 254. + 0.5), -127.), 127.)
    return b_hi.to(tl.int8), b_lo.to(tl.int8), b_s1


@triton.jit
def _load_query(q, w, i_r, scale, o_d, m_d, HI: tl.constexpr, DI: tl.constexpr,
                HP: tl.constexpr, HAS_W: tl.constexpr, IEEE: tl.constexpr, I8DOT: tl.constexpr):
    """The row's queries as a [DP, HP] tile (padded heads are 0), a second tile, and the weights
    * scale [HP]. I8DOT: the two tiles are the query's int8 parts hi and lo, and the weights
    carry s1 too (``_split_query``); otherwise the second tile is the first again (unused)."""
    o_h = tl.arange(0, HP)
    m_h = o_h < HI
    p_q = q + i_r.to(tl.int64) * (HI * DI) + o_h[None, :] * DI + o_d[:, None]
    b_q = tl.load(p_q, mask=m_d[:, None] & m_h[None, :], other=0.)  # [DP, HP]
    if IEEE:
        b_q = b_q.to(tl.float32)
    if HAS_W:
        b_w = tl.load(w + i_r.to(tl.int64) * HI + o_h, mask=m_h, other=0.).to(tl.float32)
    else:
        b_w = tl.where(m_h, 1., 0.)
    # one return: Triton compiles the untaken constexpr branch away, but not a second return
    if I8DOT:
        b_q, b_ql, b_s1 = _split_query(b_q)
        b_w = b_w * b_s1
    else:
        b_ql = b_q
    return b_q, b_ql, b_w * scale  # [DP, HP], [DP, HP], [HP]


@triton.jit
def _scores_kernel(q, k, ks, w, q_pos, kv_start, out, scale, stride_kb, stride_ks, stride_ksb, S,
                   Tq, HI: tl.constexpr, DI: tl.constexpr, HP: tl.constexpr, DP: tl.constexpr,
                   BS: tl.constexpr, RELU: tl.constexpr, IEEE: tl.constexpr,
                   HAS_W: tl.constexpr, HAS_KS: tl.constexpr, I8DOT: tl.constexpr):
    """Full score rows for ``indexer_scores``; grid (B * Tq, cdiv(S, BS))."""
    i_r, i_s = tl.program_id(0), tl.program_id(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    o_s = i_s * BS + tl.arange(0, BS)
    p_out = out + i_r.to(tl.int64) * S + o_s
    if (i_s * BS < hi) & (i_s * BS + BS > lo):
        o_d = tl.arange(0, DP)
        m_d = o_d < DI
        b_q, b_ql, b_w = _load_query(q, w, i_r, scale, o_d, m_d, HI, DI, HP, HAS_W, IEEE,
                                     I8DOT)
        m_s = (o_s >= lo) & (o_s < hi)
        k_row = k + (i_r // Tq).to(tl.int64) * stride_kb
        b_k = _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d)
        ks_row = ks + (i_r // Tq).to(tl.int64) * stride_ksb
        b_s = _tile_scores(b_k, b_q, b_ql, b_w, ks_row, o_s, m_s, RELU, IEEE, HAS_KS, I8DOT)
        tl.store(p_out, tl.where(m_s, b_s, float("-inf")), mask=o_s < S)
    else:
        # no visible slot here: do not touch the keys (a CUDA graph may hold a large S)
        tl.store(p_out, tl.full([BS], float("-inf"), tl.float32), mask=o_s < S)


@triton.jit
def _score_hist_kernel(q, k, ks, w, q_pos, kv_start, s, ws, scale, stride_kb, stride_ks, stride_ksb,
                       S, Tq, TOPK, HI: tl.constexpr, DI: tl.constexpr, HP: tl.constexpr,
                       DP: tl.constexpr, BS: tl.constexpr, CHUNK: tl.constexpr,
                       HB: tl.constexpr, WS: tl.constexpr, RELU: tl.constexpr,
                       IEEE: tl.constexpr, HAS_W: tl.constexpr, HAS_KS: tl.constexpr,
                       I8DOT: tl.constexpr, PDL: tl.constexpr):
    """Pass 1, grid (B * Tq, cdiv(S, CHUNK)): the chunk's live scores -> s, and the histogram of
    their key bits 31..24 added to the row's."""
    pdl_enter(PDL)  # the query and this step's key come from the launches before; pass 2 may
    # be scheduled now (it waits for us)
    i_r, i_c = tl.program_id(0), tl.program_id(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    o_0 = i_c * CHUNK
    # rows with at most K visible slots select all of them (pass 2 writes those); chunks with no
    # visible slot never touch their keys (a CUDA graph may be captured with a large S)
    if (hi - lo <= TOPK) | (o_0 >= hi) | (o_0 + CHUNK <= lo):
        return
    o_d = tl.arange(0, DP)
    m_d = o_d < DI
    b_q, b_ql, b_w = _load_query(q, w, i_r, scale, o_d, m_d, HI, DI, HP, HAS_W, IEEE, I8DOT)
    k_row = k + (i_r // Tq).to(tl.int64) * stride_kb
    ks_row = ks + (i_r // Tq).to(tl.int64) * stride_ksb
    s_row = s + i_r.to(tl.int64) * S
    # a compile-time trip count: Triton software-pipelines the key loads (num_stages in flight)
    for i_t in range(0, CHUNK // BS):
        o_s = o_0 + i_t * BS + tl.arange(0, BS)
        m_s = (o_s >= lo) & (o_s < hi)
        b_k = _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d)  # [BS, DP]
        b_s = _tile_scores(b_k, b_q, b_ql, b_w, ks_row, o_s, m_s, RELU, IEEE, HAS_KS,
                           I8DOT)  # [BS]
        tl.store(s_row + o_s, b_s, mask=m_s)
    # Histogram the scores as stored, re-read in a plain 1D layout: the counts then agree
    # bit-for-bit with what passes 2 and 3 read, and tl.histogram never sees the dot's layout.
    tl.debug_barrier()
    b_hist = tl.zeros([256], dtype=tl.int32)
    for i_h in range(0, CHUNK // HB):
        o_s = o_0 + i_h * HB + tl.arange(0, HB)
        m_s = (o_s >= lo) & (o_s < hi)
        b_key = _sortable_key(tl.load(s_row + o_s, mask=m_s, other=0.))  # [HB]
        b_hist += tl.histogram((b_key >> 24).to(tl.int32), 256, mask=m_s)
    # scores cluster in a few bins: only non-empty bins cost an atomic
    tl.atomic_add(ws + i_r.to(tl.int64) * WS + tl.arange(0, 256), b_hist, mask=b_hist > 0,
                  sem="relaxed")


@triton.jit
def _bin_kernel(s, q_pos, kv_start, ws, out, S, Tq, TOPK, BLOCK: tl.constexpr,
                WS: tl.constexpr, PDL: tl.constexpr):
    """Pass 2, grid (B * Tq, cdiv(S, BLOCK)). Rows with at most K visible slots: write them and
    the -1 padding. Other rows: threshold bin b1 of bits 31..24, and the histogram of bits 23..16
    of the slots inside it (unless b1 is taken whole). Nothing is written to the output here: pass
    3 writes every winner, so this pass claims no output positions and waits on no atomic.
    """
    i_r, i_c = tl.program_id(0), tl.program_id(1)
    # q_pos / kv_start were written before pass 1 began, so they are read before the wait
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    if PDL:
        tl.extra.cuda.gdc_wait()  # pass 1's scores and histogram
        tl.extra.cuda.gdc_launch_dependents()
    p_out = out + i_r.to(tl.int64) * TOPK
    o_s = i_c * BLOCK + tl.arange(0, BLOCK)
    m_s = (o_s >= lo) & (o_s < hi)
    if hi - lo <= TOPK:
        # everything visible is selected, in ascending order; program 0 pads
        tl.store(p_out + (o_s - lo), o_s, mask=m_s)
        if i_c == 0:
            j = hi - lo
            while j < TOPK:
                o_k = j + tl.arange(0, BLOCK)
                tl.store(p_out + o_k, tl.full([BLOCK], -1, tl.int32), mask=o_k < TOPK)
                j += BLOCK
        return
    if (i_c * BLOCK >= hi) | (i_c * BLOCK + BLOCK <= lo):
        return
    p_ws = ws + i_r.to(tl.int64) * WS
    # the scores are loaded before the histogram is read: the two loads overlap
    s_row = s + i_r.to(tl.int64) * S
    b_key = _sortable_key(tl.load(s_row + o_s, mask=m_s, other=0.))  # [BLOCK]
    b1, n_gt1, cnt1 = _pick_bin(tl.load(p_ws + tl.arange(0, 256)), TOPK)
    need1 = TOPK - n_gt1
    m_in = m_s & ((b_key >> 24).to(tl.int32) == b1)
    # need1 == cnt1: the whole bin is selected, pass 3 writes it
    if (need1 < cnt1) & (tl.sum(m_in.to(tl.int32), 0) > 0):
        b_hist = tl.histogram(((b_key >> 16) & 0xFF).to(tl.int32), 256, mask=m_in)
        tl.atomic_add(p_ws + _OFF_H1 + tl.arange(0, 256), b_hist, mask=b_hist > 0,
                      sem="relaxed")


@triton.jit
def _items(s_row, c_s, c_i, lo, n, i0, from_row, prefix, FB: tl.constexpr):
    """Items [i0, i0 + FB) of the last step's list: the candidates, or the whole visible row when
    they did not fit. Returns keys, slots and which items are in the list and in bin ``prefix``
    (key bits 31..16)."""
    o_i = i0 + tl.arange(0, FB)
    m_i = o_i < n
    if from_row:
        b_s = tl.load(s_row + lo + o_i, mask=m_i, other=0.)
        b_slot = lo + o_i
    else:
        # written by other programs of this launch: read through L2 (.cg), never a stale L1
        b_s = tl.load(c_s + o_i, mask=m_i, other=0., cache_modifier=".cg")
        b_slot = tl.load(c_i + o_i, mask=m_i, other=0, cache_modifier=".cg")
    b_key = _sortable_key(b_s)  # [FB]
    return b_key, b_slot, m_i & ((b_key >> 16) == prefix)


@triton.jit
def _emit(p_out, b_slot, m_win, m_tie, run_w, run_t, n_win, need):
    """Write winners at p_out[run_w...] and the first ``need`` ties after all ``n_win`` winners."""
    r_w = run_w + tl.cumsum(m_win.to(tl.int32), 0)
    tl.store(p_out + r_w - 1, b_slot, mask=m_win)
    r_t = run_t + tl.cumsum(m_tie.to(tl.int32), 0)
    tl.store(p_out + n_win + r_t - 1, b_slot, mask=m_tie & (r_t <= need))
    return run_w + tl.sum(m_win.to(tl.int32), 0), run_t + tl.sum(m_tie.to(tl.int32), 0)


@triton.jit
def _resolve(s_row, c_s, c_i, p_out, lo, n, from_row, prefix2, need2, cnt2, FB: tl.constexpr):
    """One program: write the ``need2`` largest of the ``cnt2`` items of bin ``prefix2`` (key bits
    31..16) to p_out[0:need2]. Radix passes over key bits 15..8 and 7..0 narrow the threshold
    (stopping early once a bin is taken whole); then one pass writes every item above the final
    bin and the first ``need`` items inside it. The first FB items stay in registers throughout.
    """
    b_key0, b_slot0, m_0 = _items(s_row, c_s, c_i, lo, n, 0, from_row, prefix2, FB)
    prefix = prefix2
    shift = tl.full([], 16, tl.int32)
    need = need2
    cnt = cnt2
    while (shift > 0) & (need < cnt):
        sh = (shift - 8).to(tl.uint32)
        m_b = m_0 & ((b_key0 >> shift.to(tl.uint32)) == prefix)
        b_hist = tl.histogram(((b_key0 >> sh) & 0xFF).to(tl.int32), 256, mask=m_b)
        i0 = FB
        while i0 < n:
            b_key, b_slot, m_i = _items(s_row, c_s, c_i, lo, n, i0, from_row, prefix2, FB)
            m_b = m_i & ((b_key >> shift.to(tl.uint32)) == prefix)
            b_hist += tl.histogram(((b_key >> sh) & 0xFF).to(tl.int32), 256, mask=m_b)
            i0 += FB
        i_bin, n_gt, n_bin = _pick_bin(b_hist, need)
        prefix = (prefix << 8) | i_bin.to(tl.uint32)
        shift = shift - 8
        need = need - n_gt
        cnt = n_bin
    n_win = need2 - need
    b_top = b_key0 >> shift.to(tl.uint32)
    run_w, run_t = _emit(p_out, b_slot0, m_0 & (b_top > prefix), m_0 & (b_top == prefix),
                         0, 0, n_win, need)
    i0 = FB
    while i0 < n:
        b_key, b_slot, m_i = _items(s_row, c_s, c_i, lo, n, i0, from_row, prefix2, FB)
        b_top = b_key >> shift.to(tl.uint32)
        run_w, run_t = _emit(p_out, b_slot, m_i & (b_top > prefix), m_i & (b_top == prefix),
                             run_w, run_t, n_win, need)
        i0 += FB


@triton.jit
def _gather_kernel(s, q_pos, kv_start, ws, out, cand_s, cand_i, S, Tq, TOPK, CAP,
                   BLOCK: tl.constexpr, FB: tl.constexpr, WS: tl.constexpr, PDL: tl.constexpr):
    """Pass 3, grid (B * Tq, cdiv(S, BLOCK)): threshold bin b2 of bits 23..16 inside b1; every
    winner of the block goes to the output (slots above b1, and inside b1 those above b2, or all
    of b1 when pass 2 found it taken whole), the slots inside b2 to the candidate list. Every
    program of the row then draws a ticket; the last one resolves the remaining 16 bits
    (``_resolve``) when bin b2 is not taken whole, and zeroes the row's workspace for the next
    call."""
    i_r, i_c = tl.program_id(0), tl.program_id(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)  # before the wait, as in pass 2
    if PDL:
        tl.extra.cuda.gdc_wait()  # pass 2's histogram
    c_lo = lo // BLOCK
    c_hi = tl.cdiv(hi, BLOCK)
    if (hi - lo <= TOPK) | (i_c < c_lo) | (i_c >= c_hi):
        return  # the workspace of a short row is never touched
    p_ws = ws + i_r.to(tl.int64) * WS
    s_row = s + i_r.to(tl.int64) * S
    o_s = i_c * BLOCK + tl.arange(0, BLOCK)
    m_s = (o_s >= lo) & (o_s < hi)
    b_s = tl.load(s_row + o_s, mask=m_s, other=0.)  # [BLOCK], overlaps the histogram loads
    b1, n_gt1, cnt1 = _pick_bin(tl.load(p_ws + tl.arange(0, 256)), TOPK)
    need1 = TOPK - n_gt1
    take1 = need1 == cnt1  # bin b1 whole: pass 2 histogrammed nothing, b2 is meaningless
    split1 = need1 < cnt1
    b2, n_gt2, cnt2 = _pick_bin(tl.load(p_ws + _OFF_H1 + tl.arange(0, 256)), need1)
    need2 = need1 - n_gt2
    prefix2 = (b1.to(tl.uint32) << 8) | b2.to(tl.uint32)
    p_out = out + i_r.to(tl.int64) * TOPK
    resolve = split1 & (need2 < cnt2)  # else this pass selects whole bins
    from_row = cnt2 > CAP
    b_key = _sortable_key(b_s)
    b_hi = b_key >> 16
    b_top = (b_key >> 24).to(tl.int32)
    in1 = m_s & (b_top == b1)
    m_in = in1 & (b_hi == prefix2) & split1
    m_win = (m_s & (b_top > b1)) | (in1 & (take1 | (b_hi > prefix2)))
    m_win = m_win | (m_in & (need2 == cnt2))
    o_k = _claim(p_ws + _OFF_WIN, m_win)
    tl.store(p_out + o_k, o_s, mask=m_win & (o_k < TOPK))
    if resolve & (cnt2 <= CAP):
        o_c = _claim(p_ws + _OFF_CAND, m_in)
        p_c = i_r.to(tl.int64) * CAP + o_c
        tl.store(cand_s + p_c, b_s, mask=m_in & (o_c < CAP))
        tl.store(cand_i + p_c, o_s, mask=m_in & (o_c < CAP))
    # last program of the row: every candidate of the row is written and every program is done
    # with the workspace (the barrier orders this program's stores before its release; the
    # acquire orders the others' before ours)
    tl.debug_barrier()
    n_done = tl.atomic_add(p_ws + _OFF_DONE, 1, sem="acq_rel")
    if n_done == c_hi - c_lo - 1:
        if resolve:
            n_src = tl.where(from_row, hi - lo, cnt2)
            _resolve(s_row, cand_s + i_r.to(tl.int64) * CAP, cand_i + i_r.to(tl.int64) * CAP,
                     p_out + (TOPK - need2), lo, n_src, from_row, prefix2, need2, cnt2, FB)
        o_w = tl.arange(0, 1024)
        tl.store(p_ws + o_w, tl.zeros([1024], dtype=tl.int32), mask=o_w < WS)


def _num_sms(device: torch.device) -> int:
    i = device.index if device.index is not None else torch.cuda.current_device()
    if i not in _SM_COUNT:
        _SM_COUNT[i] = torch.cuda.get_device_properties(i).multi_processor_count
    return _SM_COUNT[i]


def _prepare(q, k, w, q_pos, kv_start, scoring, scale, k_scale=None):
    """Contiguity, dtypes and compile-time sizes shared by both entry points."""
    if scoring not in ("dot", "relu"):
        raise ValueError(f"scoring must be 'dot' or 'relu', got {scoring!r}")
    B, Tq, Hi, Di = q.shape
    if k.dim() != 3 or k.shape[0] != B or k.shape[2] != Di:
        raise ValueError(f"k must be [B, S, Di] = [{B}, S, {Di}], got {tuple(k.shape)}")
    if (k.dtype == torch.int8) != (k_scale is not None):
        raise ValueError(f"int8 keys need k_scale and k_scale needs int8 keys; got k {k.dtype}, "
                         f"k_scale {None if k_scale is None else k_scale.dtype}")
    if k.stride(2) != 1:
        k = k.contiguous()
    if k_scale is not None:
        if tuple(k_scale.shape) != tuple(k.shape[:2]):
            raise ValueError(f"k_scale must be [B, S] = {list(k.shape[:2])}, got "
                             f"{tuple(k_scale.shape)}")
        k_scale = k_scale.float()
        if k_scale.stride(1) != 1:
            k_scale = k_scale.contiguous()
    # bf16/fp16 pairs go to the tensor cores as they are (int8 keys convert exactly to the query
    # dtype in the kernel); anything else is fp32 math
    k_dtype = q.dtype if k_scale is not None else k.dtype
    ieee = not (q.dtype == k_dtype and q.dtype in (torch.bfloat16, torch.float16))
    q = (q.float() if ieee else q).contiguous()
    w = None if w is None else w.float().contiguous()
    # int8 keys with a 16-bit query: int8 x int8 tensor-core dots (K a multiple of 32)
    i8dot = k_scale is not None and not ieee
    meta = dict(HI=Hi, DI=Di, HP=max(16, triton.next_power_of_2(Hi)),
                DP=max(32 if i8dot else 16, triton.next_power_of_2(Di)), RELU=scoring == "relu",
                IEEE=ieee, HAS_W=w is not None, HAS_KS=k_scale is not None, I8DOT=i8dot)
    scale = 1.0 / math.sqrt(Di) if scale is None else float(scale)
    return q, k, k_scale, w, q_pos.contiguous(), kv_start.contiguous(), scale, meta


def _key_tile(meta) -> tuple[int, int]:
    """(slots per tile, warps) of ``_scores_kernel``: the largest tile that compiles for sm_90
    without register spills (fp32 tiles are twice the bytes; 64 heads need a [BS, 64] fp32
    accumulator)."""
    if meta["IEEE"]:
        return 64, 8
    if meta["HP"] >= 64:
        return 64, 4
    return (128 if meta["DP"] >= 128 else 256), 8


def topk_config(meta: dict, R: int, S: int, num_sms: int | None) -> dict:
    """Default tiling of the top-k path for R rows of S slots.

    ``block_s`` slots x Di per key tile (one tile 32 KB in 16-bit: 3 stages in flight leave room
    for two programs per SM), ``chunk`` slots per pass-1 program (the smallest power of 2 from 512
    that still gives every SM two programs, at most 4096), ``block`` slots per pass-2/3 program
    (the largest of 1024, 512, 256 that gives every SM three), ``cap`` candidates kept per row.
    ``bench.sweep()`` times the alternatives on the GPU. ``num_sms`` None means the CPU
    interpreter.
    """
    if num_sms is None:
        # the interpreter runs one program at a time: small tiles keep tests fast
        return dict(block_s=32, chunk=128, block=256, num_warps=4, num_stages=1, cap=DEFAULT_CAP,
                    warps_bin=4, warps_gather=8)
    if meta["IEEE"] or meta["HP"] >= 64:
        block_s = 64
    else:
        block_s = 128 if meta["DP"] >= 128 else 256
    chunk = 4096
    while chunk > 512 and R * triton.cdiv(S, chunk) < 2 * num_sms:
        chunk //= 2
    # fp32 tiles are split into three tf32 parts: 8 warps keep that under 128 registers a thread;
    # int8 tiles take 8 warps too (H200: pass 1 at 128K, 10.8 -> 8.4 us at B=1, 49 -> 46 at B=8).
    # Passes 2/3 are chains of dependent loads and atomics, so they want many programs in flight:
    # the largest block that still gives every SM three, at least 256 slots (H200, 128K: B=1
    # 1024 -> 256 slots took 21.3 -> 19.3 us with int8 keys, 19.5 -> 18.1 with bf16; B=8 keeps
    # 1024). Pass 3 takes 4 warps once the rows hold over two 1024-slot blocks per SM.
    block = 1024
    while block > 256 and R * triton.cdiv(S, block) < 3 * num_sms:
        block //= 2
    warps_gather = 8 if R * triton.cdiv(S, 1024) <= 2 * num_sms else 4
    return dict(block_s=block_s, chunk=max(chunk, block_s), block=block,
                num_warps=8 if meta["IEEE"] or meta["I8DOT"] else 4, num_stages=3, cap=DEFAULT_CAP,
                warps_bin=4, warps_gather=warps_gather)


def _kernel_path(q, k, w, q_pos, kv_start, k_scale) -> bool:
    return q.shape[1] <= MAX_TQ and kernel_ok(q, k, q_pos, kv_start, w, k_scale)


def indexer_scores(q, k, w, q_pos, kv_start, scoring: str = "dot", scale: float | None = None,
                   *, k_scale=None):
    """Scores of every query against every slot; [B, Tq, S] fp32 with -inf where invisible.

    Triton for Tq <= MAX_TQ without autograd; otherwise (distillation) the naive reference.
    ``k_scale`` [B, S] fp32: ``k`` holds int8 keys, slot j's key is k[b, j] * k_scale[b, j].
    """
    grads = [t for t in (q, k, w, k_scale) if t is not None]
    if needs_grad(*grads) or not _kernel_path(q, k, w, q_pos, kv_start, k_scale):
        return naive.indexer_scores(q, k, w, q_pos, kv_start, scoring, scale, k_scale=k_scale)
    B, Tq = q.shape[:2]
    S = k.shape[1]
    q, k, k_scale, w, q_pos, kv_start, scale, meta = _prepare(q, k, w, q_pos, kv_start, scoring,
                                                              scale, k_scale)
    out = torch.empty(B, Tq, S, dtype=torch.float32, device=q.device)
    if S == 0:
        return out
    bs, warps = _key_tile(meta)
    _scores_kernel[(B * Tq, triton.cdiv(S, bs))](
        q, k, k if k_scale is None else k_scale, q if w is None else w, q_pos, kv_start, out,
        scale, k.stride(0), k.stride(1), 0 if k_scale is None else k_scale.stride(0), S, Tq,
        BS=bs, num_warps=warps, **meta)
    return out


def indexer_topk(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                 scale: float | None = None, query_chunk: int = 256, *, k_scale=None):
    """Top-``top_k`` visible slots per query; [B, Tq, top_k] int32, valid first, -1 padded.

    Valid entries come in no particular order (the reference sorts them); ties at the threshold
    score are broken arbitrarily. Tq > MAX_TQ uses the naive reference (``query_chunk`` is its
    knob); no output needs autograd. ``k_scale``: as in ``indexer_scores``.
    """
    if not _kernel_path(q, k, w, q_pos, kv_start, k_scale):
        return naive.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, scale, query_chunk,
                                  k_scale=k_scale)
    return topk_launch(q, k, w, q_pos, kv_start, top_k, scoring, scale, k_scale=k_scale)


def topk_launch(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                scale: float | None = None, *, k_scale=None, block_s: int | None = None,
                chunk: int | None = None, block: int | None = None, num_warps: int | None = None,
                num_stages: int | None = None, cap: int | None = None,
                warps_bin: int | None = None, warps_gather: int | None = None):
    """The three launches of the top-k path. ``k_scale``: 8-bit keys, as in ``indexer_scores``.
    Every other keyword overrides one field of ``topk_config``: ``block_s`` (slots per key tile),
    ``chunk`` (slots per pass-1 program, a multiple of ``block_s``), ``num_warps`` /
    ``num_stages`` (pass 1), ``block`` (slots per pass-2/3 program), ``warps_bin`` /
    ``warps_gather`` (passes 2 and 3) and ``cap`` (candidates kept per row; fewer forces the
    full-row path).
    All sizes but ``cap`` are powers of 2. Tests use them to force many programs per row.
    """
    B, Tq = q.shape[:2]
    S = k.shape[1]
    R = B * Tq
    out = torch.empty(B, Tq, top_k, dtype=torch.int32, device=q.device)
    if top_k == 0:
        return out
    if S == 0:
        return out.fill_(-1)
    q, k, k_scale, w, q_pos, kv_start, scale, meta = _prepare(q, k, w, q_pos, kv_start, scoring,
                                                              scale, k_scale)
    cfg = topk_config(meta, R, S, _num_sms(q.device) if q.is_cuda else None)
    for key, val in dict(block_s=block_s, chunk=chunk, block=block, num_warps=num_warps,
                         num_stages=num_stages, cap=cap, warps_bin=warps_bin,
                         warps_gather=warps_gather).items():
        if val is not None:
            cfg[key] = val
    bs, chunk, block = cfg["block_s"], cfg["chunk"], cfg["block"]
    if any(x & (x - 1) or x < 16 for x in (bs, chunk, block)) or chunk < bs or cfg["cap"] < 1:
        raise ValueError(f"block_s, chunk, block must be powers of 2 >= 16 with chunk >= block_s, "
                         f"cap >= 1; got {cfg}")
    s = torch.empty(R, S, dtype=torch.float32, device=q.device)  # only live slots get written
    # zero between calls (pass 3 zeroes each long row's; short rows never touch theirs)
    ws = zeroed_int32(R * _WS, q.device, "top-k workspace")[:R * _WS].view(R, _WS)
    cand_s = torch.empty(R, cfg["cap"], dtype=torch.float32, device=q.device)
    cand_i = torch.empty(R, cfg["cap"], dtype=torch.int32, device=q.device)
    _score_hist_kernel[(R, triton.cdiv(S, chunk))](
        q, k, k if k_scale is None else k_scale, q if w is None else w, q_pos, kv_start, s, ws,
        scale, k.stride(0), k.stride(1), 0 if k_scale is None else k_scale.stride(0), S, Tq,
        top_k, BS=bs, CHUNK=chunk, HB=min(chunk, 1024), WS=_WS, num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"], PDL=use_pdl(), launch_pdl=use_pdl(), **meta)
    grid = (R, triton.cdiv(S, block))
    # passes 2 and 3 are launched early (programmatic dependent launch) and wait on the device
    _bin_kernel[grid](s, q_pos, kv_start, ws, out, S, Tq, top_k, BLOCK=block, WS=_WS,
                      PDL=use_pdl(), num_warps=cfg["warps_bin"], launch_pdl=use_pdl())
    _gather_kernel[grid](s, q_pos, kv_start, ws, out, cand_s, cand_i, S, Tq, top_k, cfg["cap"],
                         BLOCK=block, FB=min(block, 1024), WS=_WS, PDL=use_pdl(),
                         num_warps=cfg["warps_gather"], launch_pdl=use_pdl())
    return out
