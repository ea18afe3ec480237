"""GPU timing of the fused decode projections against cuBLAS, and the tiling sweep behind
``gemv_config``. Needs CUDA; prints one JSON line per point.

    python -m clsa.ops.linear.bench             # yoco-3b decode shapes, M = 1, 4, 8
    python -m clsa.ops.linear.bench --sweep     # + every tiling of the sweep per shape

Every figure is a median of ``triton.testing.do_bench_cudagraph`` over a graph that runs the call
once per weight of a pool larger than the L2 cache (so the weights stream from HBM, as in a decode
step, and the launch gaps of a graph are included), divided by the pool size. Achieved bandwidth is
the weight bytes over that time.
"""

from __future__ import annotations

import itertools
import json
import sys

import torch

# (name, N, K) of the yoco-3b decode step: self-decoder QKV, cross-decoder Q, O, gate/up, down
SHAPES = [("qkv", 5120, 3072), ("q", 3072, 3072), ("o", 3072, 3072), ("gate_up", 16384, 3072),
          ("down", 3072, 8192)]


def _time(fn, pool: int) -> float:
    """Microseconds per call of ``fn(i)``, i over the weight pool, in one graph replay."""
    from triton.testing import do_bench_cudagraph

    def run():
        for i in range(pool):
            fn(i)

    return 1e3 * do_bench_cudagraph(run, rep=30, return_mode="median") / pool


def bench_shape(name: str, N: int, K: int, M: int, sweep: bool = False) -> dict:
    from clsa.ops.attention import triton_decode
    from clsa.ops.linear import stock, triton_gemv

    dev, bf = "cuda", torch.bfloat16
    wbytes = N * K * 2
    pool = max(2, -(-(256 << 20) // wbytes))  # > 5x the 50 MB L2 of an H100
    ws = [torch.randn(N, K, device=dev, dtype=bf) / K ** 0.5 for _ in range(pool)]
    x = torch.randn(M, K, device=dev, dtype=bf)
    r = torch.randn(M, K, device=dev, dtype=bf)
    gu = torch.randn(M, 2 * K, device=dev, dtype=bf)
    nw = torch.ones(K, device=dev, dtype=bf)
    rec = {"shape": name, "N": N, "K": K, "M": M, "pool": pool,
           "config": triton_gemv.gemv_config(M, N, K, x.device)}
    calls = {
        "cublas": lambda i: stock.linear(x, ws[i]),
        "gemv": lambda i: triton_gemv.linear(x, ws[i]),
        "stock_norm_linear": lambda i: stock.norm_linear(x, nw, 1e-5, ws[i], r),
        "norm_linear": lambda i: triton_gemv.norm_linear(x, nw, 1e-5, ws[i], r),
        "stock_silu_linear": lambda i: stock.silu_mul_linear(gu, ws[i]),
        "silu_linear": lambda i: triton_gemv.silu_mul_linear(gu, ws[i]),
    }
    for key, fn in calls.items():
        rec[f"{key}_us"] = _time(fn, pool)
    pdl, triton_decode.PDL = triton_decode.PDL, False  # the same launches without programmatic launch
    try:
        for key in ("gemv", "norm_linear", "silu_linear"):
            rec[f"{key}_nopdl_us"] = _time(calls[key], pool)
    finally:
        triton_decode.PDL = pdl
    for key in ("cublas", "gemv", "norm_linear", "silu_linear"):
        rec[f"{key}_TBps"] = wbytes / (rec[f"{key}_us"] * 1e-6) / 1e12
    if sweep:
        rec["sweep"] = []
        for (BN, BK, warps), split in itertools.product(((64, 128, 4), (64, 256, 4), (64, 128, 8),
                                                         (128, 128, 8), (128, 64, 8)), (1, 2, 4, 8)):
            cfg = dict(BN=BN, BK=BK, SPLIT=split, num_warps=warps, num_stages=4)
            try:
                us = _time(lambda i: triton_gemv.gemv(x, ws[i], triton_gemv.PRO_NORM, nw, 1e-5, r,
                                                      **cfg), pool)
            except Exception as e:  # out of resources: record and go on
                us = repr(e)[:80]
            rec["sweep"].append(dict(cfg, us=us))
        ok = [s for s in rec["sweep"] if isinstance(s["us"], float)]
        rec["best"] = sorted(ok, key=lambda s: s["us"])[:5]
    return rec


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    sweep = "--sweep" in argv
    out = []
    for (name, N, K), M in itertools.product(SHAPES, (1, 4, 8)):
        rec = bench_shape(name, N, K, M, sweep=sweep and M in (1, 4))
        out.append(rec)
        print(json.dumps(rec), flush=True)
    return out


if __name__ == "__main__":
    main()
