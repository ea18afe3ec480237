"""Session 11 call A (runs s10 call L unchanged) (H200): the per-layer sparse kernel's tiles in the decode step (128K, B = 2, 4,
8, where decode_gather="auto" gathers per layer): the plan (64-slot blocks / 4 warps at B = 8,
128 / 8 at B <= 4; 2 stages) against 3 stages and 128-slot blocks with 8 warps. Spans of the
replayed step, rounds alternate."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.sparse_attention import triton_decode as sd

orig = sd.sparse_attention_decode
def variant(**over):
    def f(*a, **kw):
        return orig(*a, **{**kw, **over})
    return f
V = {"plan": orig, "st3": variant(num_stages=3), "t128_8": variant(block_s=128, num_warps=8),
     "t128_8_st3": variant(block_s=128, num_warps=8, num_stages=3)}
out = sys.argv[1]
env = environment()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for rnd in range(int(sys.argv[2])):
    for name, fn in V.items():
        sd.sparse_attention_decode = fn
        for B in (2, 4, 8):
            t = graph_profile(model, "triton", B, 131072, replays=10)
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"],
                       sparse_us=sum(p["us"] for p in pos if p["kernel"].startswith("_sparse")))
            print("prof", json.dumps(rec), flush=True)
            with open(f"{out}/tiles.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
sd.sparse_attention_decode = orig
