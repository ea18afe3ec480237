"""Pass-1 tilings for 8-bit keys at B = 1 and 8, per-kernel times (run with CLSA_PDL=0 so the
profiler's kernel times do not overlap)."""
import json
from clsa.ops.indexer_topk.bench import bench_indexer_topk
for bits in (16, 8):
    for cfg in ({}, dict(block_s=64), dict(block_s=256, num_warps=8), dict(num_warps=8),
                dict(chunk=256), dict(num_stages=2), dict(num_stages=4), dict(block_s=64, chunk=256)):
        if bits == 16 and cfg:
            continue
        for B in (1, 8):
            try:
                r = bench_indexer_topk(B, key_bits=bits, eager=False, stock=False, profile=True, **cfg)
                r = {k: r.get(k) for k in ("B", "key_bits", "triton_graph_us", "kernel_us")} | cfg
            except Exception as e:
                r = {"B": B, **cfg, "error": repr(e)[:300]}
            print("p1", json.dumps(r), flush=True)
