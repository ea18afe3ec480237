"""GPU timings of the decode attention kernels against stock PyTorch (needs CUDA; not run by tests).

    python -m clsa.ops.attention.bench                  # yoco-3b head shape, a few (B, S) points
    python -m clsa.ops.attention.bench --compile-only   # CPU: the decode variants for sm_90 (ptxas)
    python -c "import torch; from clsa.ops.attention.bench import bench_decode_attention as f; \
print(f(1, 32768, 24, 8, 128, torch.bfloat16))"

Every time is a median in microseconds from ``triton.testing.do_bench`` over the replay of a CUDA
graph holding the whole variant (so Python launch overhead is not timed; ``graph=False`` times
eager calls). do_bench flushes L2 before each replay: every variant starts cold, and within one
replay a compact buffer written by the gather can stay in L2 for the layers that read it.
Before timing, each Triton result is checked against an fp32 reference with the 2x-of-PyTorch rule
(clsa.testing.assert_close, stock PyTorch as the low-precision run); a failed check raises instead
of reporting a time.

Byte counts (to compare with the 3.0 TB/s copy bandwidth of REFERENCE.md section 5):
    dense:  kv_bytes  = 2 * B * live * Hkv * D * elt           (K and V read once)
    sparse: sel_bytes = 2 * B * K * Hkv * D * elt              (selected rows, one layer's worth)
      (a) gather once + L layers on the compact buffer: sel_bytes read from the cache + sel_bytes
          written, then L * sel_bytes read mostly from L2 at small batch (50 MB on H100)
      (b) L layers that each gather in the kernel: L * sel_bytes of scattered rows from HBM
      (c) torch.gather once + L x SDPA: as (a), with stock kernels
"""

from __future__ import annotations

import itertools

import torch
from triton.testing import do_bench

from clsa.ops.attention import naive
from clsa.ops.attention import triton_decode as td
from clsa.ops.sparse_attention import naive as sparse_naive
from clsa.ops.sparse_attention import triton_decode as sd
from clsa.ops.sparse_attention import triton_gather as tg
from clsa.testing import assert_close

SDPA = torch.nn.functional.scaled_dot_product_attention


def median_us(fn, graph: bool = True) -> float:
    """Median microseconds of ``fn`` (CUDA-graph replay when ``graph`` and capture succeeds)."""
    fn()  # compile / autotune outside any capture
    torch.cuda.synchronize()
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        return do_bench(g.replay, warmup=25, rep=200, return_mode="median") * 1e3
    return do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3


def _elt(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def bench_decode_attention(B: int, S: int, Hq: int, Hkv: int, D: int,
                           dtype: torch.dtype = torch.bfloat16, live: int | None = None,
                           graph: bool = True) -> dict:
    """One decode step of one layer over a [B, S, Hkv, D] cache.

    Returns microseconds for ``triton`` (split-K kernel, every slot live), ``triton_noskip``
    (same without the empty-block scan), ``triton_nokpos`` (k_pos=None: no mask, like ``sdpa``),
    ``sdpa`` (SDPA with enable_gqa over the same cache as a
    strided [B, Hkv, S, D] view), ``sdpa_headmajor`` (SDPA over a contiguous head-major copy, the
    layout of the REFERENCE.md anchors), ``triton_live`` when ``live`` < S (only the first ``live``
    slots hold keys; SDPA has no such mask), plus ``kv_bytes`` and ``triton_TBps``.
    """
    dev = "cuda"
    q = torch.randn(B, 1, Hq, D, dtype=dtype, device=dev)
    k = torch.randn(B, S, Hkv, D, dtype=dtype, device=dev)
    v = torch.randn_like(k)
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=dev)
    k_pos = torch.arange(S, device=dev).expand(B, S).contiguous()
    kv_start = torch.zeros(B, dtype=torch.long, device=dev)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def sdpa():
        return SDPA(qt, kt, vt, enable_gqa=True)

    out = td.attention(q, k, v, q_pos, k_pos, kv_start)
    ref = naive.attention(q[:1].float(), k[:1].float(), v[:1].float(), q_pos[:1], k_pos[:1],
                          kv_start[:1])
    assert_close(out[:1], ref, low_precision=sdpa()[:1].transpose(1, 2))

    res = {"triton": median_us(lambda: td.attention(q, k, v, q_pos, k_pos, kv_start), graph),
           "triton_noskip": median_us(lambda: td.attention_decode(
               q, k, v, q_pos, k_pos, kv_start, skip_empty=False), graph),
           "triton_nokpos": median_us(lambda: td.attention(q, k, v, q_pos, None, kv_start), graph),
           "sdpa": median_us(sdpa, graph)}
    kh, vh = kt.contiguous(), vt.contiguous()
    res["sdpa_headmajor"] = median_us(lambda: SDPA(qt, kh, vh, enable_gqa=True), graph)
    del kh, vh
    if live is not None and live < S:
        k_live = torch.where(k_pos < live, k_pos, -1)
        q_live = torch.full_like(q_pos, live - 1)
        res["triton_live"] = median_us(
            lambda: td.attention(q, k, v, q_live, k_live, kv_start), graph)
    res["kv_bytes"] = 2 * B * S * Hkv * D * _elt(dtype)
    res["triton_TBps"] = res["kv_bytes"] / (res["triton"] * 1e-6) / 1e12
    return res


def bench_sparse_decode(B: int, S: int, K: int, Hq: int, Hkv: int, D: int, n_layers: int,
                        dtype: torch.dtype = torch.bfloat16, graph: bool = True,
                        l2_flush_mb: int = 0) -> dict:
    """One decode step of ``n_layers`` cross-decoder layers sharing one cache and one top-K index.

    Returns microseconds for ``gather_once`` (a: gather_kv + n_layers x Triton decode over the
    compact buffer), ``gather_per_layer`` (b: n_layers x in-kernel-gather sparse_attention),
    ``torch`` (c: torch.gather once + n_layers x SDPA), the pieces ``gather`` (gather_kv alone)
    and ``attn_compact`` (one layer over the compact buffer), and ``sel_bytes`` (one layer's
    selected K+V rows). Each layer has its own query; all selected slots are valid.

    ``l2_flush_mb`` > 0 writes that many MB between layers in every variant (standing in for the
    weights a real decode step streams between two cross layers, which evict L2); ``flush`` is
    the time of those writes alone, to subtract. With 0 the layers run back to back and the
    compact buffer (and the scattered rows) can stay in L2: the best case for gather-once.
    """
    dev = "cuda"
    qs = [torch.randn(B, 1, Hq, D, dtype=dtype, device=dev) for _ in range(n_layers)]
    k = torch.randn(B, S, Hkv, D, dtype=dtype, device=dev)
    v = torch.randn_like(k)
    idx = torch.stack([torch.randperm(S, device=dev)[:K] for _ in range(B)]).int()  # [B, K]
    idx3 = idx[:, None]  # [B, 1, K]
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=dev)
    kv_start = torch.zeros(B, dtype=torch.long, device=dev)

    junk = torch.empty(l2_flush_mb * 2**20, dtype=torch.uint8, device=dev) if l2_flush_mb else None

    def flush():
        if junk is not None:
            junk.fill_(1)

    def gather_once():
        k_sel, v_sel = tg.gather_kv(k, v, idx)
        outs = []
        for i, q in enumerate(qs):  # as in the model: every layer after the first is kv_ready
            flush()
            outs.append(td.attention(q, k_sel, v_sel, q_pos, idx, kv_start, kv_ready=i > 0))
        return outs

    def gather_per_layer():
        outs = []
        for i, q in enumerate(qs):
            flush()
            outs.append(sd.sparse_attention(q, k, v, idx3, kv_ready=i > 0))
        return outs

    def stock():
        k_sel, v_sel = sparse_naive.gather_kv(k, v, idx)
        kt, vt = k_sel.transpose(1, 2), v_sel.transpose(1, 2)
        outs = []
        for q in qs:
            flush()
            outs.append(SDPA(q.transpose(1, 2), kt, vt, enable_gqa=True).transpose(1, 2))
        return outs

    def flush_all():
        for _ in qs:
            flush()

    # check layer 0 of batch row 0 against fp32 (gather in fp32, then the dense reference)
    k_ref, v_ref = sparse_naive.gather_kv(k[:1].float(), v[:1].float(), idx[:1])
    ref = naive.attention(qs[0][:1].float(), k_ref, v_ref, q_pos[:1], idx[:1], kv_start[:1])
    lowp = stock()[0][:1]
    assert_close(gather_once()[0][:1], ref, low_precision=lowp)
    assert_close(gather_per_layer()[0][:1], ref, low_precision=lowp)

    k_sel, v_sel = tg.gather_kv(k, v, idx)
    return {
        "gather_once": median_us(gather_once, graph),
        "gather_per_layer": median_us(gather_per_layer, graph),
        "torch": median_us(stock, graph),
        "gather": median_us(lambda: tg.gather_kv(k, v, idx), graph),
        "attn_compact": median_us(
            lambda: td.attention(qs[0], k_sel, v_sel, q_pos, idx, kv_start), graph),
        "flush": median_us(flush_all, graph) if l2_flush_mb else 0.0,
        "sel_bytes": 2 * B * K * Hkv * D * _elt(dtype),
    }


def compile_report(target_arch: int = 90) -> list[dict]:
    """Compile the decode kernels for sm_90 (no GPU) in the launches of the yoco-3b head shape
    (24 query heads on 8 K/V heads, D = 128, bf16) under the tiling and split plan for 132 SMs.
    ``_attn_split_kernel``: the 2048-slot compact buffer, the 1024-slot window ring with rope, a
    dense 128K cache, at B = 1 and 8, and a 4-query row (speculative decoding).
    ``_sparse_split_kernel`` (gather per layer, rope fused): a 2048-entry index at B = 1, 2, 4, 8.
    The kernels sit near the 255-register limit, so a change that spills shows here first."""
    sms, td._num_sms = td._num_sms, lambda device: 132  # the H100 / H200 plan, no GPU
    try:
        return _compile_dense(target_arch) + _compile_sparse(target_arch)
    finally:
        td._num_sms = sms


def _compile_sparse(target_arch: int) -> list[dict]:
    from clsa.ops.compile_check import compile_variant

    fn = sd._sparse_split_kernel
    types = {a: "i32" for a in fn.arg_names}
    types.update({a: "*bf16" for a in ("q", "k", "v", "out")})
    types.update({a: "*fp32" for a in ("m_part", "l_part", "acc_part", "cos", "sin")})
    types.update(idx="*i32", counters="*i32", qk_scale="fp32")
    unit = dict(s_qd=1, s_kd=1, s_vd=1, s_ik=1)  # contiguous rows: Triton specializes 1s
    strides = [a for a in fn.arg_names if a.startswith("s_") and a not in unit]
    Hkv, G, D, K = 8, 3, 128, 2048
    rows = []
    for B, preload in itertools.product((1, 2, 4, 8), (False, True)):
        BS, warps, chunk, NS = td.decode_tiling(B * Hkv, K, torch.bfloat16, torch.device("cuda", 0))
        consts = dict(unit, **sd.tile_meta(1, Hkv, G, D, NS, chunk, BS, warps), SKIP_EMPTY=True,
                      DYN_SPAN=True, DOT_PRECISION="tf32", ROPE=True, PRELOAD=preload, PDL=True)
        rows.append(compile_variant(fn, types, consts, dict(num_warps=warps, num_stages=2),
                                    dict(kind="sparse", B=B, Tq=1, NS=NS, chunk=chunk, BS=BS,
                                         warps=warps, preload=preload),
                                    divisible=strides, target_arch=target_arch))
    return rows


def _compile_dense(target_arch: int) -> list[dict]:
    from clsa.ops.compile_check import compile_variant

    fn = td._attn_split_kernel
    types = {a: "i32" for a in fn.arg_names}
    types.update({a: "*bf16" for a in ("q", "k", "v", "out", "k_new", "v_new")})
    types.update({a: "*i64" for a in ("q_pos", "k_pos", "kv_start")})
    types.update({a: "*fp32" for a in ("m_part", "l_part", "acc_part", "cos", "sin")})
    types.update(counters="*i32", qk_scale="fp32")
    unit = dict(s_qd=1, s_kd=1, s_vd=1, s_kps=1, s_qpt=1)  # contiguous rows: Triton specializes 1s
    strides = [a for a in fn.arg_names if a.startswith("s_") and a not in unit]
    Hkv, G, D = 8, 3, 128
    rows = []
    # the cross layers' launches (compact buffer, dense cache) also with the first block read
    # before the wait (kv_ready); the ring at one query a row as ring_attention launches it (its
    # row written in the launch, the first block early where it is a program's chunk), at four
    # as attention after ring_write
    for kind, S, window, preloads in (("compact", 2048, False, (False, True)),
                                      ("ring", 1024, True, (None,)),
                                      ("dense", 131072, False, (False, True))):
        for (B, Tq), preload in itertools.product(((1, 1), (8, 1), (1, 4)), preloads):
            M = Tq * G
            BS, warps, chunk, NS = td.decode_tiling(B * Hkv, S, torch.bfloat16,
                                                    torch.device("cuda", 0))
            own = preload is None and Tq == 1
            if preload is None:
                preload = own and td.preload_first_block(True, chunk, BS)
            consts = dict(unit, **td.tile_meta(Hkv, G, M, D, NS, chunk, BS, warps), HAS_KPOS=True,
                          HAS_WINDOW=window, SKIP_EMPTY=True, DYN_SPAN=True,
                          DOT_PRECISION="tf32", ROPE=True, PRELOAD=preload, OWN_ROW=own, PDL=True)
            rows.append(compile_variant(fn, types, consts, dict(num_warps=warps, num_stages=2),
                                        dict(kind=kind, B=B, Tq=Tq, NS=NS, chunk=chunk, BS=BS,
                                             warps=warps, preload=preload, own_row=own),
                                        divisible=strides, target_arch=target_arch))
    return rows


def main() -> None:
    import sys

    if "--compile-only" in sys.argv[1:]:
        compile_report()
        return
    Hq, Hkv, D, L, K = 24, 8, 128, 14, 2048
    print(f"device: {torch.cuda.get_device_name()}  (us, medians, CUDA-graph replay)")
    for S in (8192, 32768, 131072):
        for B in (1, 4):
            d = bench_decode_attention(B, S, Hq, Hkv, D, torch.bfloat16, live=S // 8)
            s = bench_sparse_decode(B, S, K, Hq, Hkv, D, L, torch.bfloat16)
            f = bench_sparse_decode(B, S, K, Hq, Hkv, D, L, torch.bfloat16, l2_flush_mb=128)
            print(f"S={S} B={B} dense: triton {d['triton']:.1f} ({d['triton_TBps']:.2f} TB/s) "
                  f"noskip {d['triton_noskip']:.1f} nokpos {d['triton_nokpos']:.1f} "
                  f"sdpa {d['sdpa']:.1f} "
                  f"sdpa_hm {d['sdpa_headmajor']:.1f} live/8 {d['triton_live']:.1f} | "
                  f"{L} layers top-{K}: gather-once {s['gather_once']:.1f} "
                  f"per-layer {s['gather_per_layer']:.1f} torch {s['torch']:.1f} "
                  f"(gather {s['gather']:.1f}, 1 layer {s['attn_compact']:.1f}) | L2 flushed "
                  f"between layers, flush time subtracted: gather-once "
                  f"{f['gather_once'] - f['flush']:.1f} per-layer "
                  f"{f['gather_per_layer'] - f['flush']:.1f} torch {f['torch'] - f['flush']:.1f}")


if __name__ == "__main__":
    main()
