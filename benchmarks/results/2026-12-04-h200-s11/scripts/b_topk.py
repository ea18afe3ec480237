"""Session 11 call B (H200): top-k A/B, one variant per process (PYTHONPATH picks the tree).
argv: out_dir variant_name pdl(1/0) [configs json]. Graph-replay medians at 128K, B = 1 / 8,
16- / 8-bit keys, per-kernel device times (torch.profiler, eager). Configs: topk_launch keywords."""
import json, sys
from clsa.bench.env import environment
from clsa.ops.indexer_topk.bench import bench_indexer_topk
out, name, pdl = sys.argv[1], sys.argv[2], sys.argv[3]
cfgs = json.loads(sys.argv[4]) if len(sys.argv) > 4 else [{}]
env = environment()
for cfg in cfgs:
    for B in (1, 8):
        for bits in (16, 8):
            if cfg and B == 1:
                continue
            try:
                r = bench_indexer_topk(B, key_bits=bits, eager=False, stock=False,
                                       graph=pdl == "1", profile=True, **cfg)
            except Exception as e:
                print("topk", json.dumps(dict(variant=name, cfg=cfg, B=B, error=repr(e)[:300])))
                continue
            r.update(variant=name, pdl=pdl, cfg=cfg)
            print("topk", json.dumps({k: r.get(k) for k in ("variant", "pdl", "cfg", "B",
                  "key_bits", "triton_graph_us", "kernel_us")}), flush=True)
            with open(f"{out}/topk.jsonl", "a") as f:
                f.write(json.dumps(dict(r, env=env)) + "\n")
