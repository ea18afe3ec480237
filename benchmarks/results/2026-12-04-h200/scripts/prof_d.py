"""PDL-off per-kernel profile at the default tiling (run with CLSA_PDL=0)."""
import json
from clsa.ops.indexer_topk.bench import bench_indexer_topk
for bits in (16, 8):
    for B in (1, 8):
        r = bench_indexer_topk(B, key_bits=bits, eager=False, stock=False, profile=True)
        print("prof", json.dumps({k: r.get(k) for k in ("B", "key_bits", "triton_graph_us", "kernel_us")}), flush=True)
