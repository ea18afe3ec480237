"""Session 11 call F (H200): the ring write fused into the self-decoder's decode attention
(ring_attention, the working tree) against ring_write + attention (the previous path, restored by
wrapping the launcher). Spans of the replayed decode step (yoco-3b, 128K), rounds alternate."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import triton_decode as td
from clsa.ops.cache_write import triton_write

orig = td.attention_decode
def unfused(q, k, v, q_pos, k_pos, kv_start, window=None, scale=None, *a, new_kv=None, **kw):
    if new_kv is None:
        return orig(q, k, v, q_pos, k_pos, kv_start, window, scale, *a, **kw)
    kw.pop("kv_ready", None)
    triton_write.ring_write(k, v, k_pos[0], *new_kv, q_pos, kw.get("rope"))
    return orig(q, k, v, q_pos, k_pos, kv_start, window, scale, *a, **kw)
out, rounds, batches = sys.argv[1], int(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")]
env = environment()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for rnd in range(rounds):
    for name in ("fused", "write_then_attend"):
        td.attention_decode = orig if name == "fused" else unfused
        for B in batches:
            t = graph_profile(model, "triton", B, 131072, replays=10)
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            self_attn = [p["us"] for p in pos if p["kernel"].startswith(("_attn", "_ring"))][:26]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"], launches=t["launches"],
                       self_us=[round(a, 2) for a in self_attn])
            print("prof", json.dumps({k: v for k, v in rec.items() if k != "self_us"}), flush=True)
            with open(f"{out}/ring_fused.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, env=env)) + "\n")
td.attention_decode = orig
