"""Top-k A/B in one process per tree: python runs/topk_ab.py TAG [--stock] [--profile].
Run with PYTHONPATH pointing at the tree. One JSON line per (B, key_bits)."""
import json, sys
import torch
from clsa.bench.floor import copy_bandwidth
from clsa.ops.indexer_topk.bench import bench_indexer_topk

tag = sys.argv[1]
stock = "--stock" in sys.argv
prof = "--profile" in sys.argv
bw = copy_bandwidth()
for B in (1, 8):
    for bits in (16, 8):
        try:
            r = bench_indexer_topk(B, key_bits=bits, bandwidth=bw, stock=stock, profile=prof)
        except Exception as e:
            r = {"B": B, "key_bits": bits, "error": repr(e)[:600]}
        r["tree"] = tag
        print("ab", json.dumps(r, default=str), flush=True)
