"""GPU timing of the indexer top-k: the Triton path against stock PyTorch (bmm + torch.topk), a
sweep of the Triton tilings, and an sm_90 compile report that needs no GPU.

    python -c "from clsa.ops.indexer_topk.bench import bench_indexer_topk as b; print(b(1))"
    python -c "from clsa.ops.indexer_topk.bench import bench_indexer_topk as b; print(b(8, key_bits=8))"
    python -m clsa.ops.indexer_topk.bench --out $OUT/indexer_topk.json      # GPU: defaults + sweep
    python -m clsa.ops.indexer_topk.bench --sweep-key-bits 8 --out $OUT/k8.json  # sweep 8-bit keys
    python -m clsa.ops.indexer_topk.bench --compile-only                    # CPU: ptxas registers

Decode shape: one query per sequence, every sequence at q_pos = S - 1. Before timing, the Triton
selection is checked (right count, unique, in range, and a sum of selected fp32 scores no smaller
than torch.topk's on the same keys, which tolerates swaps among near-tied threshold scores); a
failing check raises instead of reporting a speed.

``dist`` picks the score distribution: "randn" (keys N(0, 1)), "offset" (every key shares a big
component along the query: scores 45 +- 0.25, so thousands of slots share the finest radix bins
and the last step works on a long candidate list), "ties" (three distinct scores: the threshold tie
holds a quarter of the row, more than the candidate list, so the slow full-row path runs).

``key_bits=8`` times the 8-bit key cache: the same keys quantized (``quant.quantize_keys``: int8
plus one fp32 scale per slot), read by the Triton kernel and by the stock path (int8 -> query dtype,
bmm, scale). The check then runs against the dequantized keys, and ``key_bytes`` (the floor: one
read of the keys) counts S * (Di + 4) bytes per sequence instead of S * Di * 2.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback

import torch
import triton

from clsa.ops.compile_check import compile_variant
from clsa.ops.indexer_topk import triton_topk
from clsa.ops.indexer_topk.quant import dequantize_keys, quantize_keys

# Tilings timed by ``sweep``: pass-1 key tile (block_s x Di), warps, pipeline stages, slots per
# pass-1 program; then the pass-2/3 block. ``{}`` is the default of ``triton_topk.topk_config``.
SWEEP_CONFIGS = [
    {},
    dict(block_s=128, num_warps=4, num_stages=3, chunk=512),
    dict(block_s=128, num_warps=4, num_stages=3, chunk=1024),
    dict(block_s=128, num_warps=4, num_stages=3, chunk=2048),
    dict(block_s=128, num_warps=4, num_stages=3, chunk=4096),
    dict(block_s=128, num_warps=4, num_stages=4, chunk=1024),
    dict(block_s=128, num_warps=4, num_stages=4, chunk=4096),
    dict(block_s=128, num_warps=8, num_stages=3, chunk=2048),
    dict(block_s=256, num_warps=8, num_stages=3, chunk=1024),
    dict(block_s=256, num_warps=8, num_stages=3, chunk=4096),
    dict(block_s=64, num_warps=4, num_stages=4, chunk=1024),
    dict(block=512),
    dict(block=2048),
]


def _inputs(B, S, Hi, Di, dtype, dist, device="cuda"):
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(B, 1, Hi, Di, device=device, generator=gen)
    if dist == "randn":
        keys = torch.randn(B, S, Di, device=device, generator=gen)
    elif dist == "offset":
        keys = 0.25 * torch.randn(B, S, Di, device=device, generator=gen) + 4 * q[:, :, 0]
    elif dist == "ties":
        q = torch.ones_like(q)
        keys = torch.zeros(B, S, Di, device=device)
        keys[..., :2] = torch.randint(0, 2, (B, S, 2), device=device, generator=gen).float()
    else:
        raise ValueError(f"dist must be randn, offset or ties, got {dist!r}")
    w = torch.rand(B, 1, Hi, device=device, generator=gen) if Hi > 1 else None
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=device)
    kv_start = torch.zeros(B, dtype=torch.long, device=device)
    return q.to(dtype), keys.to(dtype), w, q_pos, kv_start


def _stock(q, k, w, top_k, k_scale=None):
    """bmm over all slots, head mix, torch.topk: what a plain PyTorch decode step does. 8-bit keys
    (``k_scale`` [B, S]): converted to q's dtype for the bmm, the scale applied to the [B, S]
    scores (it commutes with the relu)."""
    B, _, Hi, Di = q.shape
    if k_scale is not None:
        k = k.to(q.dtype)
    s = torch.bmm(q.view(B, Hi, Di), k.transpose(1, 2)).float()  # [B, Hi, S]
    s = s[:, 0] if w is None else (s.relu() * w.view(B, Hi, 1)).sum(1)
    if k_scale is not None:
        s = s * k_scale
    return s.topk(top_k, dim=-1).indices


def check_selection(idx, q, keys, w, top_k, k_scale=None) -> None:
    """Raise unless ``idx`` [B, 1, K] is a valid top-k of the fp32 scores (decode, all visible);
    with ``k_scale`` the scores of the dequantized 8-bit keys."""
    B, _, Hi, Di = q.shape
    S = keys.shape[1]
    idx = idx.view(B, top_k).long()
    if not ((idx >= 0) & (idx < S)).all():
        raise RuntimeError("Triton top-k returned an index out of range (or -1 on a full row)")
    if not (idx.sort(-1).values.diff(dim=-1) > 0).all():
        raise RuntimeError("Triton top-k selected a slot twice")
    kf = keys.float() if k_scale is None else dequantize_keys(keys, k_scale)
    scores = torch.bmm(q.view(B, Hi, Di).float(), kf.transpose(1, 2))  # [B, Hi, S]
    scores = scores[:, 0] if w is None else (scores.relu() * w.view(B, Hi, 1)).sum(1)
    got = scores.gather(1, idx).sum(-1)
    want = scores.gather(1, _stock(q, keys, w, top_k, k_scale)).sum(-1)
    if not (got >= want - 1e-5 * want.abs() - 1e-3).all():
        raise RuntimeError(f"Triton top-k selection differs from torch.topk: {got} vs {want}")


def kernel_times(fn, iters: int = 20) -> dict:
    """Mean device microseconds per call of every kernel ``fn`` launches (torch.profiler)."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            out[e.key[:60]] = round(t / iters, 2)
    return out


def key_bytes(B: int, S: int, Di: int, key_bits: int = 16, elem: int = 2) -> int:
    """Bytes of the indexer keys one decode step reads: B * S * Di * elem, or with 8-bit keys
    B * S * (Di + 4) (one int8 per element and one fp32 scale per slot)."""
    return B * S * (Di + 4 if key_bits == 8 else Di * elem)


def bench_indexer_topk(B: int, S: int = 131072, Hi: int = 1, Di: int = 128, k: int = 2048,
                       dtype: torch.dtype = torch.bfloat16, graph: bool = True, *,
                       eager: bool = True, stock: bool = True, dist: str = "randn",
                       key_bits: int = 16, bandwidth: float | None = None,
                       profile: bool = False, **launch) -> dict:
    """Median microseconds: ``triton_us`` / ``stock_us`` (plain launches, ``do_bench``) and, with
    ``graph``, ``triton_graph_us`` / ``stock_graph_us`` (CUDA-graph replays, no launch gaps).
    ``key_bits`` 16 keeps the keys in ``dtype``, 8 quantizes them (both paths read int8 + scale).
    ``key_bytes`` is what the keys take (the floor is one read of them); ``key_read_GBps`` is it
    over the best Triton time; with ``bandwidth`` (bytes/s, e.g. ``clsa.bench.floor
    .copy_bandwidth()``) ``floor_us`` is the time of that one read. ``launch`` overrides the
    tiling (``triton_topk.topk_launch`` keywords); ``profile`` adds the per-kernel device times."""
    if key_bits not in (16, 8):
        raise ValueError(f"key_bits must be 16 or 8, got {key_bits!r}")
    q, keys, w, q_pos, kv_start = _inputs(B, S, Hi, Di, dtype, dist)
    k_scale = None
    if key_bits == 8:
        keys, k_scale = quantize_keys(keys)
    scoring = "dot" if w is None else "relu"

    def run_triton():
        return triton_topk.topk_launch(q, keys, w, q_pos, kv_start, k, scoring, k_scale=k_scale,
                                       **launch)

    def run_stock():
        return _stock(q, keys, w, k, k_scale)

    check_selection(run_triton(), q, keys, w, k, k_scale)  # correctness first (also compiles)
    res = {"B": B, "S": S, "Hi": Hi, "Di": Di, "k": k, "dtype": str(dtype), "dist": dist,
           "key_bits": key_bits, **launch}
    if eager:
        res["triton_us"] = 1e3 * triton.testing.do_bench(run_triton, return_mode="median")
        if stock:
            res["stock_us"] = 1e3 * triton.testing.do_bench(run_stock, return_mode="median")
    if graph:
        res["triton_graph_us"] = 1e3 * triton.testing.do_bench_cudagraph(run_triton,
                                                                         return_mode="median")
        if stock:
            res["stock_graph_us"] = 1e3 * triton.testing.do_bench_cudagraph(run_stock,
                                                                            return_mode="median")
    best = min(res.get("triton_us", math.inf), res.get("triton_graph_us", math.inf))
    res["key_bytes"] = key_bytes(B, S, Di, key_bits, q.element_size())
    res["key_read_GBps"] = res["key_bytes"] / (best * 1e-6) / 1e9
    if bandwidth:
        res["floor_us"] = res["key_bytes"] / bandwidth * 1e6
    if profile:
        res["kernel_us"] = kernel_times(run_triton)
    return res


def sweep(S: int = 131072, Hi: int = 1, Di: int = 128, k: int = 2048,
          dtype: torch.dtype = torch.bfloat16, batches=(1, 8), configs=None,
          budget_s: float = 120.0, key_bits: int = 16) -> list[dict]:
    """CUDA-graph time of every tiling in ``configs`` (default ``SWEEP_CONFIGS``) at each batch;
    one row per (B, config), with ``error`` instead of times when a config fails its check or
    does not compile, and ``skipped`` once ``budget_s`` seconds are spent."""
    rows, t0 = [], time.time()
    for cfg in SWEEP_CONFIGS if configs is None else configs:
        for B in batches:
            if time.time() - t0 > budget_s:
                rows.append({"B": B, "key_bits": key_bits, **cfg, "skipped": "time budget"})
                continue
            try:
                r = bench_indexer_topk(B, S, Hi, Di, k, dtype, eager=False, stock=False,
                                       key_bits=key_bits, **cfg)
            except Exception as e:  # record and go on: one bad tiling must not hide the rest
                r = {"B": B, "key_bits": key_bits, **cfg, "error": repr(e)[:400]}
            print("sweep", json.dumps(r, default=str), flush=True)
            rows.append(r)
    return rows


def compile_report(target_arch: int = 90) -> list[dict]:
    """Compile every kernel of the top-k path for sm_90 with Triton's own compiler and ptxas (no
    GPU needed): bf16 and fp32 queries, 16-bit (the query dtype) and 8-bit keys, Hi 1 and 4,
    Di 64 and 128, the default tiling and every sweep tiling of the decode shape. One row per
    variant: registers, spill bytes, shared memory."""
    rows = []

    def build(fn, types, constexprs, opts, tag):
        rows.append(compile_variant(fn, types, constexprs, opts, tag, target_arch=target_arch,
                                    divisible=("S", "TOPK", "stride_kb", "stride_ks", "CAP")))

    ints = dict(scale="fp32", stride_kb="i32", stride_ks="i32", stride_ksb="i32", S="i32",
                Tq="i32", TOPK="i32", CAP="i32", q_pos="*i64", kv_start="*i64", s="*fp32",
                ws="*i32", out="*i32", cand_s="*fp32", cand_i="*i32")
    for dt, tname, bits in ((torch.bfloat16, "bf16", 16), (torch.float32, "fp32", 16),
                            (torch.bfloat16, "bf16", 8), (torch.float32, "fp32", 8)):
        for Hi in (1, 4):
            for Di in (64, 128):
                q = torch.empty(1, 1, Hi, Di, dtype=dt)
                k8 = bits == 8
                k = torch.empty(1, 8, Di, dtype=torch.int8 if k8 else dt)
                meta = triton_topk._prepare(q, k, None if Hi == 1 else torch.empty(1, 1, Hi),
                                            torch.zeros(1, 1), torch.zeros(1),
                                            "dot" if Hi == 1 else "relu", None,
                                            torch.empty(1, 8) if k8 else None)[-1]
                types = dict(ints, q=f"*{tname}", k="*i8" if k8 else f"*{tname}",
                             ks="*fp32" if k8 else f"*{tname}",
                             w="*fp32" if Hi > 1 else f"*{tname}", out="*fp32")
                tag = dict(dtype=tname, key_bits=bits, Hi=Hi, Di=Di)
                bs, warps = triton_topk._key_tile(meta)
                build(triton_topk._scores_kernel, types, dict(meta, BS=bs, Tq=1),
                      dict(num_warps=warps), tag)
                default = triton_topk.topk_config(meta, 8, 131072, num_sms=132)
                tilings = [default]
                if dt == torch.bfloat16 and Hi == 1 and Di == 128:
                    tilings += [dict(default, **c) for c in SWEEP_CONFIGS if "block_s" in c]
                for c in tilings:
                    build(triton_topk._score_hist_kernel, dict(types, out="*i32"),
                          dict(meta, Tq=1, BS=c["block_s"], CHUNK=c["chunk"],
                               HB=min(c["chunk"], 1024), WS=triton_topk._WS, PDL=True),
                          dict(num_warps=c["num_warps"], num_stages=c["num_stages"]), tag)
    for block in (256, 512, 1024, 2048):  # the passes 2/3 blocks topk_config or a sweep picks
        build(triton_topk._bin_kernel, ints, dict(Tq=1, BLOCK=block, WS=triton_topk._WS, PDL=True),
              dict(num_warps=4), {"BLOCK": block})
        for warps in (4, 8):
            build(triton_topk._gather_kernel, ints,
                  dict(Tq=1, BLOCK=block, FB=min(block, 1024), WS=triton_topk._WS, PDL=True),
                  dict(num_warps=warps), {"BLOCK": block})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="write the results here as JSON")
    ap.add_argument("--compile-only", action="store_true",
                    help="compile every kernel for sm_90 and report registers/spills (no GPU)")
    ap.add_argument("--no-sweep", action="store_true", help="default tiling only")
    ap.add_argument("--budget", type=float, default=110.0, help="seconds for the sweep")
    ap.add_argument("--sweep-key-bits", type=int, default=16, choices=(16, 8),
                    help="key cache format the sweep times (8: int8 keys + fp32 scales)")
    args = ap.parse_args(argv)
    from clsa.bench.env import environment

    res = {"env": environment()}

    def save():
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1, default=str)

    if args.compile_only:
        res["compile"] = compile_report()
        save()
        return res
    res["default"] = []
    for B in (1, 8):
        # 8-bit keys on the ordinary distribution only: the selection passes do not see the keys
        for dist, bits in (("randn", 16), ("randn", 8), ("offset", 16), ("ties", 16)):
            try:
                r = bench_indexer_topk(B, dist=dist, key_bits=bits, profile=dist == "randn",
                                       eager=dist == "randn", stock=dist == "randn")
            except Exception as e:
                r = {"B": B, "dist": dist, "key_bits": bits, "error": repr(e)[:400],
                     "trace": traceback.format_exc()[-1500:]}
            print("default", json.dumps(r, default=str), flush=True)
            res["default"].append(r)
            save()
    if not args.no_sweep:
        res["sweep"] = sweep(budget_s=args.budget, key_bits=args.sweep_key_bits)
        ok = [r for r in res["sweep"] if "triton_graph_us" in r]
        res["best"] = {B: min((r for r in ok if r["B"] == B), key=lambda r: r["triton_graph_us"],
                              default=None) for B in (1, 8)}
        save()
    return res


if __name__ == "__main__":
    main()
