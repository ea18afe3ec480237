"""Session 11 call C (H200): cross-layer attention reading its first K/V block before the PDL wait
(kv_ready, the model's default now) against the same step with kv_ready forced off. Spans of the
replayed decode step (yoco-3b, 128K, B = 1, 2, 4, 8), rounds alternate."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import triton_decode as td
from clsa.ops.sparse_attention import triton_decode as sd

orig = {"td": td.attention_decode, "sd": sd.sparse_attention_decode}
def off(fn):
    def f(*a, **kw):
        kw["kv_ready"] = False
        return fn(*a, **kw)
    return f
out = sys.argv[1]
env = environment()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for rnd in range(int(sys.argv[2])):
    for name in ("ready", "off"):
        td.attention_decode = orig["td"] if name == "ready" else off(orig["td"])
        sd.sparse_attention_decode = orig["sd"] if name == "ready" else off(orig["sd"])
        for B in (1, 2, 4, 8):
            t = graph_profile(model, "triton", B, 131072, replays=10)
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            attn = [p["us"] for p in pos if p["kernel"].startswith(("_attn", "_sparse"))]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"], attn_us=sum(attn),
                       attn_each=[round(a, 2) for a in attn])
            print("prof", json.dumps({k: v for k, v in rec.items() if k != "attn_each"}), flush=True)
            with open(f"{out}/kv_ready.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
