"""Session 10 call E (H200): critical-path replay spans of the decode step (128K) at B = 1, 2, 4, 8:
old short-span tiling + gather once (the tree's previous state), new tiling + gather once, new
tiling + gather per layer (rotary fused, one-load index scan in the sparse kernel). Rounds alternate."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import triton_decode as td

new_tiling = td.decode_tiling
def old_tiling(n, S, dt, dev):
    return (64, 4, *td.split_plan(n, S, 64, dev))
V = {"new_once": (new_tiling, "once"),
     "new_per_layer": (new_tiling, "per_layer")}
out = sys.argv[1]
env = environment()
print("env", json.dumps(env), flush=True)
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
N = 131072
for rnd in range(int(sys.argv[2])):
    for name, (tiling, gather) in V.items():
        td.decode_tiling = tiling
        model.config.decode_gather = gather
        for B in (1, 2, 4, 8):
            t = graph_profile(model, "triton", B, N, replays=10)
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"],
                       attn_us=sum(p["us"] for p in pos if p["kernel"].startswith(("_attn", "_sparse"))),
                       gather_us=sum(p["us"] for p in pos if p["kernel"].startswith("_gather_kv")),
                       rotary_us=sum(p["us"] for p in pos if p["kernel"].startswith("_rotary")))
            print("prof", json.dumps(rec), flush=True)
            rec["attn_seq"] = [round(p["us"], 2) for p in pos if p["kernel"].startswith(("_attn", "_sparse"))]
            rec["by_kernel"] = {r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:12]}
            with open(f"{out}/e.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
td.decode_tiling = new_tiling
