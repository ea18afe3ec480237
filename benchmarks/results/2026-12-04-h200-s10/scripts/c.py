"""Session 10 call C (H200): critical-path replay spans of the decode step (128K) with the new
short-span tiling (one 128-slot block, 8 warps, at <= 2 programs per SM) against the old
(64-slot blocks, 4 warps), at B = 1, 2, 4, 8; one-stage pipelines for the one-block programs;
128-slot blocks at B = 4; the per-layer gather under the new rule. Rounds alternate."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import triton_decode as td

new_tiling, orig_decode = td.decode_tiling, td.attention_decode
def old_tiling(n, S, dt, dev):
    return (64, 4, *td.split_plan(n, S, 64, dev))
def wide_tiling(n, S, dt, dev):  # short spans: blocks of up to 128 slots and 8 warps at any grid
    chunk, NS = td.split_plan(n, S, 64, dev)
    if -(-S // 64) <= td.SHORT_BLOCKS:
        return (min(chunk, 128), 8, chunk, NS)
    return (64, 4, chunk, NS)
def stages1(*a, **kw):
    return orig_decode(*a, **{**kw, "num_stages": 1})
V = {  # name: (tiling, attention launcher, gather, batches)
    "old": (old_tiling, orig_decode, "once", (1, 2, 4, 8)),
    "new": (new_tiling, orig_decode, "once", (1, 2, 4, 8)),
    "new_st1": (new_tiling, stages1, "once", (1, 2)),
    "wide": (wide_tiling, orig_decode, "once", (4,)),
    "per_layer_new": (new_tiling, orig_decode, "per_layer", (1, 8)),
}
out = sys.argv[1]
env = environment()
print("env", json.dumps(env), flush=True)
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
N = 131072
for rnd in range(int(sys.argv[2])):
    for name, (tiling, launcher, gather, batches) in V.items():
        td.decode_tiling, td.attention_decode = tiling, launcher
        model.config.decode_gather = gather
        for B in batches:
            try:
                t = graph_profile(model, "triton", B, N, replays=10)
            except Exception as e:
                print("fail", name, B, repr(e)[:300], flush=True)
                continue
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"],
                       attn_us=sum(p["us"] for p in pos if p["kernel"].startswith(("_attn", "_sparse"))),
                       gemv_us=sum(p["us"] for p in pos if p["kernel"].startswith("_gemv")))
            print("prof", json.dumps(rec), flush=True)
            rec["attn_seq"] = [round(p["us"], 2) for p in pos if p["kernel"].startswith(("_attn", "_sparse", "_rotary"))]
            rec["by_kernel"] = {r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:12]}
            with open(f"{out}/c.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
td.decode_tiling, td.attention_decode = new_tiling, orig_decode
