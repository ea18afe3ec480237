"""Skinny projections for decode (Triton): a few rows times a weight, prologue fused into the load.

Same signatures as naive.py. Shape legend: x [M, K] rows (M <= MAX_ROWS), weight [N, K], out
[M, N]; partials [SPLIT, M, N] fp32; counters [>= N / BN] int32 (``split_counters``, shared
with the attention kernels).

One launch, grid (N / BN, SPLIT). A program streams a [BN, KCHUNK] slab of the weight, BK columns
per step (a compile-time trip count: Triton keeps ``num_stages`` tiles in flight), and multiplies
it by the matching [BK, M] slice of the input, transposed so that the weight is the MMA's wide
operand (``[BN, BK] @ [BK, BM]``, BM = 16 rows, the unused ones masked to zero). The input slice is
made on the fly by the prologue:
  - ``PRO_NORM``: rms_norm(x + residual) * norm_weight. The row's 1 / rms is one factor per row,
    so it scales the product afterwards: the loop multiplies (x + residual) by norm_weight and sums
    the squares of the same slice (the first version summed them in a pre-pass over the whole row:
    a chain of dependent L2 reads that tripled the launch's time). Programs of the first N tile
    also write x + residual, the residual stream the next block needs.
  - ``PRO_SILU``: silu(gate) * up from the fused gate/up output.
With SPLIT > 1 the K axis is split to give every SM work (N = 3072 at BN = 64 is 48 programs for
132 SMs): each program stores its fp32 [BN, M] partial (and its sums of squares), then draws a
ticket from its N-tile's counter (acquire-release); the program that draws the last ticket sums
the partials in split order (deterministic), writes the output and sets the counter back to 0, so
the counters are clean for the next launch without a memset and the launch can be captured in a
CUDA graph. Many short programs also hide the latency of the prologue's loads, which the
software pipeliner does not overlap as it does the weight tiles'.
Programmatic dependent launch (sm_90): each program reads its first weight tile, lets the next
launch start (``gdc_launch_dependents``) and only then waits for the previous launch to finish
(``gdc_wait``) before it reads the input or the counters. Weights never depend on an earlier
kernel, so a chain of projections streams weights while the previous one drains.
No host sync. Tiling: ``gemv_config`` (README.md has the sweep behind it).
"""

from __future__ import annotations

import json
import os

import torch
import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import (_num_sms, dot_precision, interpreting, kernel_ok,
                                              needs_grad, split_counters, use_pdl)
from clsa.ops.linear import naive
from clsa.ops.norm import triton_norm

MAX_ROWS = 16       # rows of one MMA tile; more rows (prefill, training) go to cuBLAS
PRO_NONE, PRO_NORM, PRO_SILU = 0, 1, 2


@triton.jit
def _load_in(x_ptr, r_ptr, o_m, m_m, o_kk, K, XS, SILU: tl.constexpr, HAS_RES: tl.constexpr):
    """The input slice [BM, BK] at columns o_kk: (gate, up) for SILU, (x, residual) with a
    residual, else (x, x)."""
    o_x = o_m[:, None] * XS + o_kk[None, :]
    m_x = m_m[:, None] & (o_kk < K)[None, :]
    b_x = tl.load(x_ptr + o_x, mask=m_x, other=0.)
    if SILU:
        b_y = tl.load(x_ptr + o_x + K, mask=m_x, other=0.)
    elif HAS_RES:
        b_y = tl.load(r_ptr + o_x, mask=m_x, other=0.)
    else:
        b_y = b_x
    return b_x, b_y


@triton.jit
def _step(b_acc, b_ss, b_w, b_x, b_y, nw_ptr, sum_ptr, o_m, m_m, o_kk, K, store_sum,
          NORM: tl.constexpr, SILU: tl.constexpr, HAS_RES: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Apply the prologue to one input slice and fold it into the [BN, BM] product."""
    if SILU:
        b_g = b_x.to(tl.float32)
        b_a = (b_g / (1.0 + tl.exp(-b_g)) * b_y.to(tl.float32)).to(b_w.dtype)
    elif NORM:
        if HAS_RES:  # the residual stream x + r, rounded as the reference rounds it
            b_x = b_x + b_y
            m_x = m_m[:, None] & (o_kk < K)[None, :]
            tl.store(sum_ptr + o_m[:, None] * K + o_kk[None, :], b_x, mask=m_x & store_sum)
        b_f = b_x.to(tl.float32)
        b_ss += tl.sum(b_f * b_f, axis=1)
        # rsqrt(mean) is one factor per row: it scales the finished product
        b_nw = tl.load(nw_ptr + o_kk, mask=o_kk < K, other=0.).to(tl.float32)  # [BK]
        b_a = (b_f * b_nw[None, :]).to(b_w.dtype)
    else:
        b_a = b_x
    b_acc += tl.dot(b_w, tl.trans(b_a), input_precision=DOT_PRECISION)  # [BN, BM]
    return b_acc, b_ss


@triton.jit
def _gemv_kernel(
    x_ptr, r_ptr, nw_ptr, w_ptr, out_ptr, sum_ptr, part_ptr, cnt_ptr,
    M, N, K, eps,
    NORM: tl.constexpr, SILU: tl.constexpr, HAS_RES: tl.constexpr, SPLIT: tl.constexpr,
    KCHUNK: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DOT_PRECISION: tl.constexpr, PDL: tl.constexpr,
):
    i_n, i_k = tl.program_id(0), tl.program_id(1)
    o_m = tl.arange(0, BM)
    m_m = o_m < M
    o_n = i_n * BN + tl.arange(0, BN)
    m_n = o_n < N
    o_k = tl.arange(0, BK)
    XS = 2 * K if SILU else K  # row stride of the input
    k_lo = i_k * KCHUNK
    p_w = w_ptr + o_n[:, None].to(tl.int64) * K + o_k[None, :]  # [BN, BK] at column 0
    # the first weight tile does not depend on the previous launch: with programmatic dependent
    # launch it is read while that launch finishes, and this launch lets the next one start
    b_w = tl.load(p_w + k_lo, mask=m_n[:, None] & ((k_lo + o_k) < K)[None, :], other=0.)
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
        tl.extra.cuda.gdc_wait()  # the input (and the counters) after the previous launch
    store_sum = i_n == 0  # programs of the first N tile write x + residual
    # the next input slice is always loaded a step ahead: the pipeliner overlaps the weight
    # tiles, not loads that feed the prologue's arithmetic
    b_x, b_y = _load_in(x_ptr, r_ptr, o_m, m_m, k_lo + o_k, K, XS, SILU, HAS_RES)
    b_xn, b_yn = _load_in(x_ptr, r_ptr, o_m, m_m, k_lo + BK + o_k, K, XS, SILU, HAS_RES)
    b_acc, b_ss = _step(tl.zeros([BN, BM], dtype=tl.float32), tl.zeros([BM], dtype=tl.float32),
                        b_w, b_x, b_y, nw_ptr, sum_ptr, o_m, m_m, k_lo + o_k, K, store_sum,
                        NORM, SILU, HAS_RES, DOT_PRECISION)  # b_ss: NORM's sum of squares
    b_x, b_y = b_xn, b_yn
    for kk in range(BK, KCHUNK, BK):
        o_kk = k_lo + kk + o_k
        b_w = tl.load(p_w + k_lo + kk, mask=m_n[:, None] & (o_kk < K)[None, :], other=0.)  # [BN, BK]
        b_xn, b_yn = _load_in(x_ptr, r_ptr, o_m, m_m, o_kk + BK, K, XS, SILU, HAS_RES)
        b_acc, b_ss = _step(b_acc, b_ss, b_w, b_x, b_y, nw_ptr, sum_ptr, o_m, m_m, o_kk, K,
                            store_sum, NORM, SILU, HAS_RES, DOT_PRECISION)
        b_x, b_y = b_xn, b_yn
    o_out = o_m[None, :] * N + o_n[:, None]  # [BN, BM] into out [M, N]
    m_out = m_n[:, None] & m_m[None, :]
    if SPLIT > 1:
        # partials: [SPLIT, M, N] products, then [N tiles, SPLIT, BM] sums of squares
        p_ss = part_ptr + SPLIT * M * N + (i_n * SPLIT) * BM + o_m
        tl.store(part_ptr + i_k * M * N + o_out, b_acc, mask=m_out)
        if NORM:
            tl.store(p_ss + i_k * BM, b_ss)
        # the barrier orders every thread's partial stores before the (one-thread) release; the
        # acquire orders the other programs' stores before the last program's loads
        tl.debug_barrier()
        n_done = tl.atomic_add(cnt_ptr + i_n, 1, sem="acq_rel")
        if n_done == SPLIT - 1:  # the last program of this N tile sums the partials in order
            b_acc = tl.zeros([BN, BM], dtype=tl.float32)
            b_ss = tl.zeros([BM], dtype=tl.float32)
            # unrolled: the SPLIT loads are all in flight at once (a loop paid one dependent L2
            # round trip per split, after the last weight byte: most of a launch's fixed cost)
            for s in tl.static_range(SPLIT):
                # written by other programs of this launch: read through L2 (.cg), never stale L1
                b_acc += tl.load(part_ptr + s * M * N + o_out, mask=m_out, other=0.,
                                 cache_modifier=".cg")
                if NORM:
                    b_ss += tl.load(p_ss + s * BM, cache_modifier=".cg")
            if NORM:
                b_acc = b_acc * tl.rsqrt(b_ss / K + eps)[None, :]
            tl.store(out_ptr + o_out, b_acc.to(out_ptr.dtype.element_ty), mask=m_out)
            tl.atomic_xchg(cnt_ptr + i_n, 0, sem="relaxed")
    else:
        if NORM:
            b_acc = b_acc * tl.rsqrt(b_ss / K + eps)[None, :]
        tl.store(out_ptr + o_out, b_acc.to(out_ptr.dtype.element_ty), mask=m_out)


def _tiling_overrides() -> dict:
    """``CLSA_GEMV_TILING``: a JSON file {"N,K": {BN, BK, SPLIT, num_warps, num_stages}} that
    replaces ``gemv_config``'s choice per weight shape (the sweep's winners, for A/B runs)."""
    path = os.environ.get("CLSA_GEMV_TILING")
    if not path:
        return {}
    with open(path) as f:
        table = json.load(f)
    keys = {"BN", "BK", "SPLIT", "num_warps", "num_stages"}
    for shape, cfg in table.items():
        if set(cfg) != keys:
            raise ValueError(f"CLSA_GEMV_TILING={path}: entry {shape!r} must give exactly "
                             f"{sorted(keys)}, got {sorted(cfg)}")
    return table


_OVERRIDES = _tiling_overrides()


def gemv_config(M: int, N: int, K: int, device: torch.device) -> dict:
    """Tiling for an [M, K] x [N, K]^T product: BN x BK weight tiles, SPLIT programs per N tile,
    and the pipeline depth.

    From the H100 sweeps over the yoco-3b decode shapes (README.md), weights streaming from HBM:
    - short rows (K <= 4096): [64, 256] tiles, 4 warps. Narrow outputs (QKV, Q, O) split K into
      one- or two-tile programs, about six programs per SM, with a 2-deep pipeline; the gate/up
      projection (N >= 8192) is one program per 64 columns with a 3-deep pipeline.
    - long rows (down, K = 8192): [128, 128] tiles, 8 warps, K split to two programs per SM,
      3-deep pipeline.
    A deeper pipeline than a program's loop needs only costs shared memory, and so programs per
    SM: four stages put the Q / O projections' 2-tile programs in two waves.
    Shapes and the SM count only: graph safe. ``CLSA_GEMV_TILING`` overrides it per shape."""
    if f"{N},{K}" in _OVERRIDES:
        return dict(_OVERRIDES[f"{N},{K}"])
    sms = _num_sms(device)
    if K <= 4096:
        BN, BK, warps = 64, 256, 4
        n_tiles, k_tiles = triton.cdiv(N, BN), triton.cdiv(K, BK)
        if N >= 8192:
            split, stages = 1, 3
        else:
            split, stages = max(1, min(k_tiles, triton.cdiv(6 * sms, n_tiles))), 2
    else:
        BN, BK, warps, stages = 128, 128, 8, 3
        split = max(1, min(2 * sms // triton.cdiv(N, BN), triton.cdiv(K, BK) // 4))
    return dict(BN=BN, BK=BK, SPLIT=split, num_warps=warps, num_stages=stages)


def k_split(K: int, BK: int, SPLIT: int) -> tuple[int, int]:
    """(KCHUNK, split): columns per program, whole BK tiles, and the programs per N tile that
    actually get columns (at most SPLIT)."""
    kchunk = triton.cdiv(triton.cdiv(K, BK), SPLIT) * BK
    return kchunk, triton.cdiv(K, kchunk)


def gemv(x, weight, pro: int = PRO_NONE, norm_weight=None, eps: float = 0.0, residual=None,
         BN: int | None = None, BK: int | None = None, SPLIT: int | None = None,
         num_warps: int | None = None, num_stages: int | None = None):
    """The launcher (no fallback): (out [M, N], summed [M, K] or None). x [M, K] ([M, 2K] for
    the gate), contiguous; tiling keywords override ``gemv_config`` (tests, sweeps)."""
    N, K = weight.shape
    M = x.shape[0]
    if x.shape[1] != (2 * K if pro == PRO_SILU else K):
        raise ValueError(f"input {tuple(x.shape)} does not match weight {tuple(weight.shape)}")
    if M > MAX_ROWS:
        raise ValueError(f"{M} rows > {MAX_ROWS}: use the public functions, which fall back")
    if x.dtype != weight.dtype:
        raise ValueError(f"input dtype {x.dtype} != weight dtype {weight.dtype}")
    cfg = gemv_config(M, N, K, x.device)
    for name, val in dict(BN=BN, BK=BK, SPLIT=SPLIT, num_warps=num_warps, num_stages=num_stages).items():
        if val is not None:
            cfg[name] = val
    kchunk, split = k_split(K, cfg["BK"], cfg["SPLIT"])
    n_tiles = triton.cdiv(N, cfg["BN"])
    out = torch.empty(M, N, dtype=x.dtype, device=x.device)
    summed = torch.empty_like(x) if residual is not None else None
    # products [split, M, N] and sums of squares [N tiles, split, BM], one fp32 buffer
    part = (torch.empty(split * M * N + n_tiles * split * MAX_ROWS, dtype=torch.float32,
                        device=x.device) if split > 1 else out)
    cnt = split_counters(n_tiles, x.device) if split > 1 else out
    if M == 0:
        return out, summed
    dummy = x
    _gemv_kernel[(n_tiles, split)](
        x, dummy if residual is None else residual, dummy if norm_weight is None else norm_weight,
        weight, out, dummy if summed is None else summed, part, cnt,
        M, N, K, eps,
        NORM=pro == PRO_NORM, SILU=pro == PRO_SILU, HAS_RES=residual is not None, SPLIT=split,
        KCHUNK=kchunk, BM=MAX_ROWS, BN=cfg["BN"], BK=cfg["BK"], DOT_PRECISION=dot_precision(x.dtype),
        PDL=use_pdl(),
        num_warps=cfg["num_warps"], num_stages=1 if interpreting() else cfg["num_stages"],
        launch_pdl=use_pdl(),
    )
    return out, summed


def _rows(t, K: int):
    return t.contiguous().view(-1, K)


def _fits(x, weight, *others) -> bool:
    """Decode-shaped and Triton-runnable: few rows, no autograd, one dtype, contiguous weight."""
    rows = x.numel() // max(x.shape[-1], 1)
    return (rows <= MAX_ROWS and x.dtype == weight.dtype and weight.is_contiguous()
            and not needs_grad(x, weight, *others) and kernel_ok(x, weight, *others))


def linear(x, weight):
    if not _fits(x, weight):
        return naive.linear(x, weight)
    out, _ = gemv(_rows(x, x.shape[-1]), weight)
    return out.view(*x.shape[:-1], weight.shape[0])


def norm_linear(x, norm_weight, eps: float, weight, residual=None):
    others = (norm_weight,) if residual is None else (norm_weight, residual)
    if not _fits(x, weight, *others) or (residual is not None and residual.dtype != x.dtype):
        # the unfused pair: the norm kernel (or its fallback), then cuBLAS
        h, summed = triton_norm.rms_norm(x, norm_weight, eps, residual)
        return naive.linear(h, weight), summed
    K = x.shape[-1]
    out, summed = gemv(_rows(x, K), weight, PRO_NORM, norm_weight, eps,
                       None if residual is None else _rows(residual, K))
    return out.view(*x.shape[:-1], weight.shape[0]), x if summed is None else summed.view(x.shape)


def silu_mul_linear(gate_up, weight):
    if not _fits(gate_up, weight):
        return naive.linear(triton_norm.silu_mul(gate_up), weight)
    out, _ = gemv(_rows(gate_up, gate_up.shape[-1]), weight, PRO_SILU)
    return out.view(*gate_up.shape[:-1], weight.shape[0])
