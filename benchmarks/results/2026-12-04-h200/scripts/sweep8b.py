"""Int8-key pass-1 tilings with 8 warps at B=1 and B=8 (PYTHONPATH=.)."""
import json
from clsa.ops.indexer_topk.bench import bench_indexer_topk
CFGS = [{}, dict(chunk=1024), dict(chunk=4096), dict(num_stages=4), dict(num_stages=2),
        dict(block_s=256, chunk=2048), dict(block_s=64), dict(warps_gather=4), dict(block=2048)]
for cfg in CFGS:
    for B in (1, 8):
        try:
            r = bench_indexer_topk(B, key_bits=8, eager=False, stock=False, **cfg)
            r = {k: r[k] for k in ("B", "triton_graph_us")} | cfg
        except Exception as e:
            r = {"B": B, **cfg, "error": repr(e)[:300]}
        print("sweep8b", json.dumps(r), flush=True)
