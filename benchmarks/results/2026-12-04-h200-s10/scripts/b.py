"""Session 10 call B (H200): critical-path replay spans of the decode step (128K, B = 1, 8) under
decode-attention tile variants (block, warps, stages), the B = 8 short-span split count, and the
per-layer gather (config decode_gather="per_layer", with its separate q rotary launch).
Rounds alternate the variants; one JSON line per (round, variant, B)."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import triton_decode as td

orig = td.attention_decode
def tiles(bs, w, st):
    def f(*a, **kw):
        return orig(*a, **{**kw, "block_s": bs, "num_warps": w, "num_stages": st})
    return f
V = {
    "rule": {},
    "per_layer": {"gather": "per_layer"},
    "t64_4_3": {"tiles": (64, 4, 3)},
    "t32_4_2": {"tiles": (32, 4, 2)},
    "t128_8_2": {"tiles": (128, 8, 2)},
    "t64_8_2": {"tiles": (64, 8, 2)},
    "t32_4_3": {"tiles": (32, 4, 3)},
    "busy4": {"busy": 4},
}
out = sys.argv[1]
env = environment()
print("env", json.dumps(env), flush=True)
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
N = 131072
for rnd in range(int(sys.argv[2])):
    for name, v in V.items():
        td.attention_decode = tiles(*v["tiles"]) if "tiles" in v else orig
        td.SHORT_SPLITS_BUSY = v.get("busy", 8)
        model.config.decode_gather = v.get("gather", "once")
        for B in (1, 8):
            try:
                t = graph_profile(model, "triton", B, N, replays=10)
            except Exception as e:  # a variant that fails to compile or run: record, go on
                print("fail", name, B, repr(e)[:300], flush=True)
                continue
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"],
                       attn_us=sum(p["us"] for p in pos if p["kernel"].startswith(("_attn", "_sparse"))),
                       by_kernel={r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:10]})
            print("prof", json.dumps(rec), flush=True)
            rec["attn_seq"] = [round(p["us"], 2) for p in pos if p["kernel"].startswith(("_attn", "_sparse", "_rotary"))]
            with open(f"{out}/b.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
td.attention_decode = orig
