"""Pass-2/3 tilings at HEAD, bf16 and int8 keys, B = 1 and 8 (PYTHONPATH=.)."""
import json
from clsa.ops.indexer_topk.bench import bench_indexer_topk
CFGS = [{}, dict(block=256), dict(block=512), dict(block=2048), dict(warps_gather=4),
        dict(warps_gather=8), dict(block=512, warps_gather=4), dict(warps_bin=8)]
for cfg in CFGS:
    for bits in (8, 16):
        for B in (1, 8):
            try:
                r = bench_indexer_topk(B, key_bits=bits, eager=False, stock=False, **cfg)
                r = {k: r[k] for k in ("B", "key_bits", "triton_graph_us")} | cfg
            except Exception as e:
                r = {"B": B, "key_bits": bits, **cfg, "error": repr(e)[:300]}
            print("sweepd", json.dumps(r), flush=True)
