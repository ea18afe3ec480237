"""Int8-key tilings at HEAD: python runs/topk_sweep8.py (PYTHONPATH=.)."""
import json, time
from clsa.ops.indexer_topk.bench import bench_indexer_topk

CFGS = [{}]
CFGS += [dict(chunk=c) for c in (256, 512, 1024, 2048, 4096)]
CFGS += [dict(block_s=256, num_warps=8, chunk=c) for c in (512, 2048)]
CFGS += [dict(block_s=64, num_warps=4, num_stages=4, chunk=c) for c in (512, 1024)]
CFGS += [dict(block=b) for b in (512, 2048, 4096)]
CFGS += [dict(warps_bin=8), dict(warps_gather=4), dict(warps_bin=8, warps_gather=4),
         dict(block=2048, warps_bin=8, warps_gather=8), dict(block=4096, warps_bin=8, warps_gather=16)]
t0 = time.time()
for cfg in CFGS:
    for B in (1, 8):
        if time.time() - t0 > 100:
            break
        try:
            r = bench_indexer_topk(B, key_bits=8, eager=False, stock=False, **cfg)
            r = {k: r[k] for k in ("B", "triton_graph_us")} | cfg
        except Exception as e:
            r = {"B": B, **cfg, "error": repr(e)[:300]}
        print("sweep8", json.dumps(r), flush=True)
