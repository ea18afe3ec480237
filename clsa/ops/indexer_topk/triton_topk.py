"""Indexer scoring and top-k selection in Triton (same API as ``naive.py``): score every live slot
once, radix-select the k-th largest score per query, then compact the winners.

Shape legend
    q        [B, Tq, Hi, Di]   indexer queries (Hi indexer heads), fp32 / bf16 / fp16
    k        [B, S, Di]        indexer keys (any batch / slot strides, Di contiguous)
    w        [B, Tq, Hi]       per-head weights; None means 1 for every head
    q_pos    [B, Tq] int       slot of each query; kv_start [B] int, first valid slot
    scores   [B, Tq, S] fp32   -inf where the slot is not visible (kv_start <= s <= q_pos visible)
    idx      [B, Tq, K] int32  selected slots, valid first (in no particular order), -1 after

One "row" is one query (r = b * Tq + t). The top-k path runs four kernels on grids (B * Tq, P),
P programs per row, each walking its row's live chunks [kv_start, q_pos] cyclically:
    1. ``_score_hist_kernel``  scores -> fp32 scratch, histogram of key bits 31..21 (atomics)
    2. ``_refine_kernel``      threshold bin of pass 0, histogram of bits 20..10 inside it
    3. ``_refine_kernel``      threshold bin of pass 1, histogram of bits 9..0 inside it
    4. ``_select_kernel``      exact threshold key T: writes every slot > T, ties == T until K
A row with at most K visible slots skips 1-3 (all visible slots are selected, scores unneeded).
No host sync, scratch from ``torch.empty`` / ``torch.zeros`` per call: a CUDA graph can capture it.
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

from clsa.ops.attention.triton_decode import kernel_ok, needs_grad
from clsa.ops.indexer_topk import naive

MAX_TQ = 16

# Radix digits of the 32-bit sortable key: (bits, shift) of passes 0, 1, 2.
_BITS0, _SHIFT0, _NB0 = tl.constexpr(11), tl.constexpr(21), tl.constexpr(2048)
_BITS1, _SHIFT1, _NB1 = tl.constexpr(11), tl.constexpr(10), tl.constexpr(2048)
_BITS2, _NB2 = tl.constexpr(10), tl.constexpr(1024)
# Per-row int32 workspace, zeroed once per call:
#   hist0 [2048] | hist1 [2048] | hist2 [1024] | cnt [2] (> T, == T) | state0 [3] | state1 [3]
# state j = (prefix resolved by pass j, how many of its bin are still to take, bin fully taken)
_OFF_H1 = tl.constexpr(2048)
_OFF_H2 = tl.constexpr(4096)
_OFF_CNT = tl.constexpr(5120)
_OFF_ST0 = tl.constexpr(5122)
_OFF_ST1 = tl.constexpr(5125)
_WS = 5128

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
def _threshold_bin(p_hist, prefix, need, BITS: tl.constexpr, NB: tl.constexpr):
    """The bin of the ``need``-th largest digit in a histogram of keys that share ``prefix``.

    Returns the prefix extended by that bin, how many keys of the bin must still be taken, and
    the bin's count. Needs ``need <= sum(hist)``; then 1 <= taken <= count.
    """
    o_b = tl.arange(0, NB)
    b_h = tl.load(p_hist + o_b)  # [NB]
    b_ge = tl.sum(b_h, 0) - tl.cumsum(b_h, 0) + b_h  # [NB] keys with digit >= b
    i_bin = tl.max(tl.where(b_ge >= need, o_b, -1), 0)
    n_gt = tl.sum(tl.where(o_b > i_bin, b_h, 0), 0)
    n_bin = tl.sum(tl.where(o_b == i_bin, b_h, 0), 0)
    return (prefix << BITS) | i_bin.to(tl.uint32), need - n_gt, n_bin


@triton.jit
def _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d):
    p_k = k_row + o_s[:, None].to(tl.int64) * stride_ks + o_d[None, :]
    return tl.load(p_k, mask=m_s[:, None] & m_d[None, :], other=0.)  # [BS, DP]


@triton.jit
def _tile_scores(b_k, b_q, b_w, RELU: tl.constexpr, IEEE: tl.constexpr):
    """Scores of BS slots: sum_h w_h * f(q_h . k_s), the scale folded into w."""
    if IEEE:
        b_dot = tl.dot(b_k.to(tl.float32), b_q, input_precision="tf32x3")  # [BS, HP]
    else:
        b_dot = tl.dot(b_k, b_q)  # [BS, HP] fp32 accumulate
    if RELU:
        b_dot = tl.maximum(b_dot, 0.)
    return tl.sum(b_dot * b_w[None, :], 1)  # [BS]


@triton.jit
def _load_query(q, w, i_r, scale, o_d, m_d, HI: tl.constexpr, DI: tl.constexpr,
                HP: tl.constexpr, HAS_W: tl.constexpr, IEEE: tl.constexpr):
    """The row's queries as a [DP, HP] tile (padded heads are 0) and its weights * scale [HP]."""
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
    return b_q, b_w * scale  # [DP, HP], [HP]


@triton.jit
def _scores_kernel(q, k, w, q_pos, kv_start, out, scale, stride_kb, stride_ks, S, Tq,
                   HI: tl.constexpr, DI: tl.constexpr, HP: tl.constexpr, DP: tl.constexpr,
                   BS: tl.constexpr, RELU: tl.constexpr, IEEE: tl.constexpr,
                   HAS_W: tl.constexpr):
    """Full score rows for ``indexer_scores``; grid (B * Tq, cdiv(S, BS))."""
    i_r, i_s = tl.program_id(0), tl.program_id(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    o_s = i_s * BS + tl.arange(0, BS)
    p_out = out + i_r.to(tl.int64) * S + o_s
    if (i_s * BS < hi) & (i_s * BS + BS > lo):
        o_d = tl.arange(0, DP)
        m_d = o_d < DI
        b_q, b_w = _load_query(q, w, i_r, scale, o_d, m_d, HI, DI, HP, HAS_W, IEEE)
        m_s = (o_s >= lo) & (o_s < hi)
        k_row = k + (i_r // Tq).to(tl.int64) * stride_kb
        b_k = _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d)
        b_s = _tile_scores(b_k, b_q, b_w, RELU, IEEE)
        tl.store(p_out, tl.where(m_s, b_s, float("-inf")), mask=o_s < S)
    else:
        # no visible slot here: do not touch the keys (a CUDA graph may hold a large S)
        tl.store(p_out, tl.full([BS], float("-inf"), tl.float32), mask=o_s < S)


@triton.jit
def _score_hist_kernel(q, k, w, q_pos, kv_start, s, ws, scale, stride_kb, stride_ks, S, Tq, TOPK,
                       HI: tl.constexpr, DI: tl.constexpr, HP: tl.constexpr, DP: tl.constexpr,
                       BS: tl.constexpr, CHUNK: tl.constexpr, WS: tl.constexpr,
                       RELU: tl.constexpr, IEEE: tl.constexpr, HAS_W: tl.constexpr):
    """Pass 0: live scores -> s [R, S] and the histogram of key bits 31..21 -> hist0."""
    i_r, i_p = tl.program_id(0), tl.program_id(1)
    n_p = tl.num_programs(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    if hi - lo <= TOPK:
        return  # every visible slot is selected; the select kernel writes them
    # this program's chunks: c0 + j * n_p for j < n_mine (all below cdiv(hi, CHUNK))
    c0 = lo // CHUNK + i_p
    n_mine = tl.maximum(tl.cdiv(hi, CHUNK) - c0 + n_p - 1, 0) // n_p
    NSUB: tl.constexpr = CHUNK // BS
    n_it = n_mine * NSUB

    o_d = tl.arange(0, DP)
    m_d = o_d < DI
    b_q, b_w = _load_query(q, w, i_r, scale, o_d, m_d, HI, DI, HP, HAS_W, IEEE)
    k_row = k + (i_r // Tq).to(tl.int64) * stride_kb
    s_row = s + i_r.to(tl.int64) * S
    # One flat loop over (chunk, sub-block). While loops are not software-pipelined, so the next
    # key tile is loaded by hand before the current one is scored (two tiles in flight).
    it = 0
    o_s = c0 * CHUNK + tl.arange(0, BS)
    m_s = (o_s >= lo) & (o_s < hi) & (it < n_it)
    b_k = _load_keys(k_row, o_s, m_s, stride_ks, o_d, m_d)  # [BS, DP]
    while it < n_it:
        it += 1
        o_n = (c0 + (it // NSUB) * n_p) * CHUNK + (it % NSUB) * BS + tl.arange(0, BS)
        m_n = (o_n >= lo) & (o_n < hi) & (it < n_it)
        b_kn = _load_keys(k_row, o_n, m_n, stride_ks, o_d, m_d)  # [BS, DP]
        tl.store(s_row + o_s, _tile_scores(b_k, b_q, b_w, RELU, IEEE), mask=m_s)
        o_s, m_s, b_k = o_n, m_n, b_kn
    # Histogram the scores as stored, re-read in a plain 1D layout: the counts then agree
    # bit-for-bit with what later passes read, and tl.histogram never sees the dot's layout.
    tl.debug_barrier()
    b_hist = tl.zeros([_NB0], dtype=tl.int32)
    j = 0
    while j < n_mine:
        o_c = (c0 + j * n_p) * CHUNK + tl.arange(0, CHUNK)
        m_c = (o_c >= lo) & (o_c < hi)
        b_key = _sortable_key(tl.load(s_row + o_c, mask=m_c, other=0., cache_modifier=".cg"))
        b_hist += tl.histogram((b_key >> _SHIFT0).to(tl.int32), _NB0, mask=m_c)
        j += 1
    o_b = tl.arange(0, _NB0)
    # scores cluster in few bins: only non-empty bins cost an atomic
    tl.atomic_add(ws + i_r.to(tl.int64) * WS + o_b, b_hist, mask=b_hist > 0, sem="relaxed")


@triton.jit
def _refine_kernel(s, q_pos, kv_start, ws, S, Tq, TOPK, BLOCK: tl.constexpr, WS: tl.constexpr,
                   PASS: tl.constexpr):
    """Pass 1 or 2: resolve the previous pass's threshold bin, histogram the next digit in it."""
    i_r, i_p = tl.program_id(0), tl.program_id(1)
    n_p = tl.num_programs(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    if hi - lo <= TOPK:
        return
    p_ws = ws + i_r.to(tl.int64) * WS
    # every program derives the same threshold from the finished histogram; program 0 records it
    if PASS == 1:
        prefix, need, n_bin = _threshold_bin(p_ws, tl.full([], 0, tl.uint32), TOPK, _BITS0, _NB0)
        SHIFT_IN: tl.constexpr = _SHIFT0
        SHIFT_OUT: tl.constexpr = _SHIFT1
        NB_OUT: tl.constexpr = _NB1
        OFF_ST: tl.constexpr = _OFF_ST0
        OFF_H: tl.constexpr = _OFF_H1
    else:
        if tl.load(p_ws + _OFF_ST0 + 2) != 0:
            return  # pass 0's bin is taken whole: nothing left to resolve
        prefix = tl.load(p_ws + _OFF_ST0).to(tl.uint32, bitcast=True)
        need = tl.load(p_ws + _OFF_ST0 + 1)
        prefix, need, n_bin = _threshold_bin(p_ws + _OFF_H1, prefix, need, _BITS1, _NB1)
        SHIFT_IN: tl.constexpr = _SHIFT1
        SHIFT_OUT: tl.constexpr = 0
        NB_OUT: tl.constexpr = _NB2
        OFF_ST: tl.constexpr = _OFF_ST1
        OFF_H: tl.constexpr = _OFF_H2
    done = n_bin == need
    if i_p == 0:
        tl.store(p_ws + OFF_ST, prefix.to(tl.int32, bitcast=True))
        tl.store(p_ws + OFF_ST + 1, need)
        tl.store(p_ws + OFF_ST + 2, done.to(tl.int32))
    if done:
        return
    c1 = tl.cdiv(hi, BLOCK)
    s_row = s + i_r.to(tl.int64) * S
    b_hist = tl.zeros([NB_OUT], dtype=tl.int32)
    c = lo // BLOCK + i_p
    while c < c1:
        o_s = c * BLOCK + tl.arange(0, BLOCK)
        m_s = (o_s >= lo) & (o_s < hi)
        b_key = _sortable_key(tl.load(s_row + o_s, mask=m_s, other=0.))
        m_in = m_s & ((b_key >> SHIFT_IN) == prefix)
        b_dig = ((b_key >> SHIFT_OUT) & (NB_OUT - 1)).to(tl.int32)
        b_hist += tl.histogram(b_dig, NB_OUT, mask=m_in)
        c += n_p
    o_b = tl.arange(0, NB_OUT)
    tl.atomic_add(p_ws + OFF_H + o_b, b_hist, mask=b_hist > 0, sem="relaxed")


@triton.jit
def _select_kernel(s, q_pos, kv_start, ws, out, S, Tq, TOPK, BLOCK: tl.constexpr,
                   WS: tl.constexpr):
    """Write the row's selection: slots with key > T at [0, K - need), ties at [K - need, K)."""
    i_r, i_p = tl.program_id(0), tl.program_id(1)
    n_p = tl.num_programs(1)
    lo, hi = _visible_range(q_pos, kv_start, i_r, Tq, S)
    p_out = out + i_r.to(tl.int64) * TOPK
    c1 = tl.cdiv(hi, BLOCK)
    if i_p == 0:
        j = tl.minimum(hi - lo, TOPK)
        while j < TOPK:
            o_k = j + tl.arange(0, BLOCK)
            tl.store(p_out + o_k, tl.full([BLOCK], -1, tl.int32), mask=o_k < TOPK)
            j += BLOCK
    if hi - lo <= TOPK:
        # everything visible is selected, in ascending order
        c = lo // BLOCK + i_p
        while c < c1:
            o_s = c * BLOCK + tl.arange(0, BLOCK)
            tl.store(p_out + (o_s - lo), o_s, mask=(o_s >= lo) & (o_s < hi))
            c += n_p
        return
    p_ws = ws + i_r.to(tl.int64) * WS
    # T = the exact threshold key, compared on its top (32 - shift) bits
    prefix = tl.load(p_ws + _OFF_ST0).to(tl.uint32, bitcast=True)
    need = tl.load(p_ws + _OFF_ST0 + 1)
    shift = tl.full([], _SHIFT0, tl.int32)
    if tl.load(p_ws + _OFF_ST0 + 2) == 0:
        prefix = tl.load(p_ws + _OFF_ST1).to(tl.uint32, bitcast=True)
        need = tl.load(p_ws + _OFF_ST1 + 1)
        shift = tl.full([], _SHIFT1, tl.int32)
        if tl.load(p_ws + _OFF_ST1 + 2) == 0:
            prefix, need, _ = _threshold_bin(p_ws + _OFF_H2, prefix, need, _BITS2, _NB2)
            shift = tl.full([], 0, tl.int32)
    n_gt = TOPK - need
    s_row = s + i_r.to(tl.int64) * S
    c = lo // BLOCK + i_p
    while c < c1:
        o_s = c * BLOCK + tl.arange(0, BLOCK)
        m_s = (o_s >= lo) & (o_s < hi)
        b_top = _sortable_key(tl.load(s_row + o_s, mask=m_s, other=0.)) >> shift.to(tl.uint32)
        m_gt = m_s & (b_top > prefix)
        m_eq = m_s & (b_top == prefix)
        n_blk = tl.sum(m_gt.to(tl.int32), 0)
        if n_blk > 0:
            base = tl.atomic_add(p_ws + _OFF_CNT, n_blk)
            o_k = base + tl.cumsum(m_gt.to(tl.int32), 0) - 1
            # (o_k < n_gt holds by construction; the mask only guards memory if counts broke)
            tl.store(p_out + o_k, o_s, mask=m_gt & (o_k < n_gt))
        n_blk = tl.sum(m_eq.to(tl.int32), 0)
        if n_blk > 0:
            # ties at the threshold: the first ``need`` to claim a place win
            base = tl.atomic_add(p_ws + _OFF_CNT + 1, n_blk)
            o_k = base + tl.cumsum(m_eq.to(tl.int32), 0) - 1
            tl.store(p_out + n_gt + o_k, o_s, mask=m_eq & (o_k < need))
        c += n_p


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 2  # the interpreter: keep grids small
    i = device.index if device.index is not None else torch.cuda.current_device()
    if i not in _SM_COUNT:
        _SM_COUNT[i] = torch.cuda.get_device_properties(i).multi_processor_count
    return _SM_COUNT[i]


def _prepare(q, k, w, q_pos, kv_start, scoring, scale):
    """Contiguity, dtypes and compile-time sizes shared by both entry points."""
    if scoring not in ("dot", "relu"):
        raise ValueError(f"scoring must be 'dot' or 'relu', got {scoring!r}")
    B, Tq, Hi, Di = q.shape
    if k.dim() != 3 or k.shape[0] != B or k.shape[2] != Di:
        raise ValueError(f"k must be [B, S, Di] = [{B}, S, {Di}], got {tuple(k.shape)}")
    if k.stride(2) != 1:
        k = k.contiguous()
    # bf16/fp16 pairs go to the tensor cores as they are; anything else is fp32 math
    ieee = not (q.dtype == k.dtype and q.dtype in (torch.bfloat16, torch.float16))
    q = (q.float() if ieee else q).contiguous()
    w = None if w is None else w.float().contiguous()
    meta = dict(HI=Hi, DI=Di, HP=max(16, triton.next_power_of_2(Hi)),
                DP=max(16, triton.next_power_of_2(Di)), RELU=scoring == "relu", IEEE=ieee,
                HAS_W=w is not None)
    scale = 1.0 / math.sqrt(Di) if scale is None else float(scale)
    return q, k, w, q_pos.contiguous(), kv_start.contiguous(), scale, meta


def _key_tile(meta) -> tuple[int, int]:
    """(slots per key tile, warps) for the scoring kernels: the largest tile that compiles for
    sm_90 without register spills (checked with ptxas: fp32 tiles are twice the bytes, and 64
    heads need a [BS, 64] fp32 accumulator)."""
    if meta["IEEE"]:
        return 64, 8
    if meta["HP"] >= 64:
        return 64, 4
    return (128 if meta["DP"] >= 128 else 256), 8


def _kernel_path(q, k, w, q_pos, kv_start) -> bool:
    extra = [] if w is None else [w]
    return q.shape[1] <= MAX_TQ and kernel_ok(q, k, q_pos, kv_start, *extra)


def indexer_scores(q, k, w, q_pos, kv_start, scoring: str = "dot", scale: float | None = None):
    """Scores of every query against every slot; [B, Tq, S] fp32 with -inf where invisible.

    Triton for Tq <= MAX_TQ without autograd; otherwise (distillation) the naive reference.
    """
    if needs_grad(q, k, *([] if w is None else [w])) or not _kernel_path(q, k, w, q_pos, kv_start):
        return naive.indexer_scores(q, k, w, q_pos, kv_start, scoring, scale)
    B, Tq = q.shape[:2]
    S = k.shape[1]
    q, k, w, q_pos, kv_start, scale, meta = _prepare(q, k, w, q_pos, kv_start, scoring, scale)
    out = torch.empty(B, Tq, S, dtype=torch.float32, device=q.device)
    if S == 0:
        return out
    bs, warps = _key_tile(meta)
    _scores_kernel[(B * Tq, triton.cdiv(S, bs))](
        q, k, q if w is None else w, q_pos, kv_start, out, scale, k.stride(0), k.stride(1), S, Tq,
        BS=bs, num_warps=warps, **meta)
    return out


def indexer_topk(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                 scale: float | None = None, query_chunk: int = 256):
    """Top-``top_k`` visible slots per query; [B, Tq, top_k] int32, valid first, -1 padded.

    Valid entries come in no particular order (the reference sorts them); ties at the threshold
    score are broken arbitrarily. Tq > MAX_TQ uses the naive reference (``query_chunk`` is its
    knob); no output needs autograd.
    """
    if not _kernel_path(q, k, w, q_pos, kv_start):
        return naive.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, scale, query_chunk)
    return topk_launch(q, k, w, q_pos, kv_start, top_k, scoring, scale)


def topk_launch(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                scale: float | None = None, chunk: int | None = None, block: int = 1024,
                programs: int | None = None):
    """The four launches of the top-k path. ``chunk`` (slots per pass-0 step, a multiple of the
    key tile; default max(256, tile)), ``block`` (slots per later-pass step) and ``programs``
    (per row) let tests force many programs and chunks on small rows; by default each kernel
    gets about two programs per SM, whatever the batch.
    """
    B, Tq = q.shape[:2]
    S = k.shape[1]
    R = B * Tq
    out = torch.empty(B, Tq, top_k, dtype=torch.int32, device=q.device)
    if top_k == 0:
        return out
    if S == 0:
        return out.fill_(-1)
    q, k, w, q_pos, kv_start, scale, meta = _prepare(q, k, w, q_pos, kv_start, scoring, scale)
    bs, warps = _key_tile(meta)
    chunk = chunk or max(256, bs)
    bs = min(bs, chunk)
    if chunk & (chunk - 1) or block & (block - 1) or chunk < 16:
        raise ValueError(f"chunk ({chunk}) and block ({block}) must be powers of 2, chunk >= 16")
    want = max(1, triton.cdiv(2 * _num_sms(q.device), R))
    p0 = programs or min(triton.cdiv(S, chunk), want)
    p1 = programs or min(triton.cdiv(S, block), want)
    s = torch.empty(R, S, dtype=torch.float32, device=q.device)  # only live slots get written
    ws = torch.zeros(R, _WS, dtype=torch.int32, device=q.device)
    _score_hist_kernel[(R, p0)](
        q, k, q if w is None else w, q_pos, kv_start, s, ws, scale, k.stride(0), k.stride(1),
        S, Tq, top_k, BS=bs, CHUNK=chunk, WS=_WS, num_warps=warps, **meta)
    for pass_ in (1, 2):
        _refine_kernel[(R, p1)](s, q_pos, kv_start, ws, S, Tq, top_k, BLOCK=block, WS=_WS,
                                PASS=pass_, num_warps=8)
    _select_kernel[(R, p1)](s, q_pos, kv_start, ws, out, S, Tq, top_k, BLOCK=block, WS=_WS,
                            num_warps=8)
    return out
