"""GPU timing of the fused decode projections against cuBLAS, and the tiling sweep behind
``gemv_config``. Needs CUDA; prints one JSON line per point.

    python -m clsa.ops.linear.bench             # yoco-3b decode shapes, M = 1, 4, 8
    python -m clsa.ops.linear.bench --sweep     # + every tiling of the sweep per shape
    python -m clsa.ops.linear.bench --wide BEST.json   # WIDE tilings, own prologues; winners
    python -m clsa.ops.linear.bench --wide BEST.json --batches 1,8   # ... at these row counts
    python -m clsa.ops.linear.bench --wide BEST.json --batches 1,8 --narrow  # rule vs NARROW
    python -m clsa.ops.linear.bench --compile-only   # CPU: every decode tiling for sm_90 (ptxas)

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


def _weights(N: int, K: int) -> list[torch.Tensor]:
    """A pool of bf16 [N, K] weights, more than 256 MB in all (> 5x the 50 MB L2 of an H100)."""
    pool = max(2, -(-(256 << 20) // (N * K * 2)))
    return [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) / K ** 0.5 for _ in range(pool)]


def bench_shape(name: str, N: int, K: int, M: int, sweep: bool = False) -> dict:
    from clsa.ops.attention import triton_decode
    from clsa.ops.linear import stock, triton_gemv

    dev, bf = "cuda", torch.bfloat16
    wbytes = N * K * 2
    ws = _weights(N, K)
    pool = len(ws)
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


# The wide sweep (``--wide``): tilings with fewer pipeline stages (a program that streams two
# tiles needs no four-deep pipeline, and the shared memory of unused stages halves how many
# programs fit on an SM), wider tiles that put a program's whole slab in one or two loads, and
# more splits. (BN, BK, warps, SPLIT, stages) per K; the first of each list is session 5's
# tiling. Session 6 (H100): its winners are ``gemv_config``'s rule now. The last entries of each
# list (session 7) keep more weight bytes in flight per SM - deeper pipelines, fewer and longer
# programs - for HBM faster than the H100's (the H200's 4.8 TB/s at the same 132 SMs). The
# last two (session 9) split finer, since the split merge no longer costs a round trip a split.
_STAGES = (4, 3, 2)
WIDE = {
    3072: [(64, 256, 4, 8, st) for st in _STAGES] + [(64, 256, 4, 12, st) for st in (3, 2)]
    + [(64, 512, 8, 6, 2), (128, 256, 8, 6, 2), (128, 128, 8, 8, 3), (64, 128, 4, 12, 3)]
    + [(64, 256, 4, 10, 2), (64, 256, 4, 6, 3), (64, 256, 4, 4, 4), (64, 256, 8, 12, 2)]
    + [(64, 128, 4, 24, 2), (32, 256, 4, 12, 2)],
    8192: [(128, 128, 8, 5, st) for st in _STAGES] + [(128, 128, 8, 11, st) for st in (3, 2)]
    + [(64, 256, 4, 8, 3), (64, 256, 4, 11, 3), (64, 256, 4, 11, 2), (64, 512, 8, 16, 2),
       (128, 256, 8, 8, 2)]
    + [(128, 128, 8, 11, 4), (128, 128, 8, 16, 3), (64, 256, 4, 11, 4)]
    + [(128, 128, 8, 22, 2), (64, 256, 4, 16, 3)],
}
WIDE_UP = [(128, 128, 8, 1, st) for st in _STAGES] + [(64, 256, 4, 1, 3), (64, 256, 4, 2, 3),
                                                      (128, 128, 8, 2, 3), (128, 256, 8, 1, 2),
                                                      (64, 256, 4, 1, 4), (64, 256, 4, 2, 4)]
# Narrow tiles (session 9): 16 or 32 weight rows a program, so that a program can own whole rows
# (SPLIT 1: no partials, no ticket, no merge after the last byte) and still leave every SM work
# (N = 3072 at BN = 16 is 192 programs), with deep pipelines of small tiles. ``--narrow`` times
# them against the default rule.
NARROW = {
    3072: [(16, 256, 4, 1, 4), (16, 256, 4, 1, 6), (16, 256, 8, 1, 4), (32, 256, 4, 1, 4),
           (16, 256, 4, 2, 4), (32, 256, 4, 2, 3), (32, 256, 8, 1, 4), (16, 128, 4, 1, 8)],
    8192: [(32, 256, 4, 1, 4), (32, 256, 4, 2, 4), (16, 256, 4, 1, 6), (16, 256, 4, 2, 4),
           (64, 256, 4, 2, 3), (32, 512, 8, 1, 3)],
}
NARROW_UP = [(32, 256, 4, 1, 4), (32, 256, 8, 1, 4), (32, 512, 8, 1, 3)]
# which prologue each decode projection runs
PROLOGUE = {"qkv": "norm", "q": "norm", "o": "none", "gate_up": "norm", "down": "silu"}


def sweep_wide(batches=(1, 4), narrow: bool = False) -> tuple[list[dict], dict]:
    """Every WIDE tiling (``narrow``: the rule's tiling and every NARROW one) of every decode
    shape with its own prologue, at M in ``batches``.
    Returns the records and, per weight shape "N,K", the tiling with the least summed time over
    the shape's projections and batches (the ``CLSA_GEMV_TILING`` format)."""
    from clsa.ops.linear import triton_gemv as tg

    dev, bf = "cuda", torch.bfloat16
    recs, total = [], {}  # total: (N,K, tiling) -> [summed us, calls that ran]
    for name, N, K in SHAPES:
        wbytes = N * K * 2
        ws = _weights(N, K)
        pool = len(ws)
        nw = torch.ones(K, device=dev, dtype=bf)
        cands = WIDE_UP if N >= 8192 else WIDE[K]
        if narrow:
            rule = tg.gemv_config(1, N, K, torch.device(dev))
            cands = [tuple(rule[k] for k in ("BN", "BK", "num_warps", "SPLIT", "num_stages"))]
            cands += NARROW_UP if N >= 8192 else NARROW[K]
        for M in batches:
            x = torch.randn(M, 2 * K if PROLOGUE[name] == "silu" else K, device=dev, dtype=bf)
            r = torch.randn(M, K, device=dev, dtype=bf)
            for BN, BK, warps, split, stages in cands:
                cfg = dict(BN=BN, BK=BK, SPLIT=split, num_warps=warps, num_stages=stages)
                pro = PROLOGUE[name]
                if pro == "norm":
                    fn = lambda i: tg.gemv(x, ws[i], tg.PRO_NORM, nw, 1e-5, r, **cfg)  # noqa: E731
                elif pro == "silu":
                    fn = lambda i: tg.gemv(x, ws[i], tg.PRO_SILU, **cfg)  # noqa: E731
                else:
                    fn = lambda i: tg.gemv(x, ws[i], **cfg)  # noqa: E731
                try:
                    us = _time(fn, pool)
                except Exception as e:  # out of resources: record and go on
                    us = repr(e)[:80]
                rec = dict(cfg, shape=name, N=N, K=K, M=M, us=us)
                if isinstance(us, float):
                    rec["TBps"] = wbytes / (us * 1e-6) / 1e12
                    t = total.setdefault((f"{N},{K}", BN, BK, warps, split, stages), [0.0, 0])
                    t[0] += us
                    t[1] += 1
                recs.append(rec)
                print(json.dumps(rec), flush=True)
        del ws
    runs = {}  # a tiling counts only if it ran for every projection and batch of its shape
    for name, N, K in SHAPES:
        runs[f"{N},{K}"] = runs.get(f"{N},{K}", 0) + len(batches)
    best = {}
    for (shape, BN, BK, warps, split, stages), (us, n) in sorted(total.items(),
                                                                  key=lambda kv: kv[1][0]):
        if shape not in best and n == runs[shape]:
            best[shape] = dict(BN=BN, BK=BK, SPLIT=split, num_warps=warps, num_stages=stages)
    return recs, best


def compile_report(target_arch: int = 90) -> list[dict]:
    """Compile the gemv kernel for sm_90 (no GPU): every decode shape under its own prologue at
    its ``gemv_config`` tiling for 132 SMs (the H100 / H200), and every ``WIDE`` and ``NARROW``
    candidate tiling of the shape."""
    from clsa.ops.compile_check import compile_variant
    from clsa.ops.linear import triton_gemv as tg

    rows = []
    tg_sms, tg._num_sms = tg._num_sms, lambda device: 132  # the H100 / H200 tiling, no GPU
    try:
        default = {name: tg.gemv_config(1, N, K, torch.device("cuda", 0)) for name, N, K in SHAPES}
    finally:
        tg._num_sms = tg_sms
    types = dict(x_ptr="*bf16", r_ptr="*bf16", nw_ptr="*bf16", w_ptr="*bf16", out_ptr="*bf16",
                 sum_ptr="*bf16", part_ptr="*fp32", cnt_ptr="*i32", M="i32", N="i32", K="i32",
                 eps="fp32")
    for name, N, K in SHAPES:
        pro = PROLOGUE[name]
        more = (WIDE_UP + NARROW_UP) if N >= 8192 else (WIDE[K] + NARROW[K])
        cands = [default[name]] + [dict(BN=bn, BK=bk, num_warps=w, SPLIT=sp, num_stages=st)
                                   for bn, bk, w, sp, st in more]
        for cfg in cands:
            kchunk, split = tg.k_split(K, cfg["BK"], cfg["SPLIT"])
            consts = dict(NORM=pro == "norm", SILU=pro == "silu", HAS_RES=pro == "norm",
                          SPLIT=split, KCHUNK=kchunk, BM=tg.MAX_ROWS,
                          BN=cfg["BN"], BK=cfg["BK"], DOT_PRECISION="tf32", PDL=True)
            opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
            rows.append(compile_variant(tg._gemv_kernel, types, consts, opts,
                                        dict(shape=name, BN=cfg["BN"], BK=cfg["BK"],
                                             SPLIT=cfg["SPLIT"], default=cfg is cands[0]),
                                        divisible=("N", "K"), target_arch=target_arch))
    return rows


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if "--compile-only" in argv:
        return compile_report()
    if "--wide" in argv:  # python -m clsa.ops.linear.bench --wide BEST.json [--batches 1,8] [--narrow]
        batches = (1, 4)
        if "--batches" in argv:
            i = argv.index("--batches")
            batches = tuple(int(b) for b in argv[i + 1].split(","))
            argv = argv[:i] + argv[i + 2:]
        narrow = "--narrow" in argv
        argv = [a for a in argv if a != "--narrow"]
        recs, best = sweep_wide(batches, narrow)
        path = argv[argv.index("--wide") + 1] if len(argv) > argv.index("--wide") + 1 else None
        print(json.dumps({"best": best}), flush=True)
        if path:
            with open(path, "w") as f:
                json.dump(best, f, indent=1)
        return recs
    sweep = "--sweep" in argv
    out = []
    for (name, N, K), M in itertools.product(SHAPES, (1, 4, 8)):
        rec = bench_shape(name, N, K, M, sweep=sweep and M in (1, 4))
        out.append(rec)
        print(json.dumps(rec), flush=True)
    return out


if __name__ == "__main__":
    main()
