"""Session 10 call A (H200): decode step (graph replay, 128K, B = 1, 8) under
gemv tiling overrides for the gate/up -> down -> QKV transitions (fewer pipeline stages so the
next projection's programs fit beside the running one) and short-span attention split counts.
Alternating rounds; one JSON line per (round, variant, B); a critical-path profile per variant."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model, time_step
from clsa.bench.env import environment
from clsa.bench.floor import cache_bytes_read, copy_bandwidth, weight_bytes
from clsa.bench.suite import Row, config_for
from clsa.ops.linear import triton_gemv as tg
from clsa.ops.attention import triton_decode as td

def T(bn, bk, w, sp, st):
    return dict(BN=bn, BK=bk, num_warps=w, SPLIT=sp, num_stages=st)

QKV, DOWN, GU = "5120,3072", "3072,8192", "16384,3072"
V = {
    "rule": ({}, 16),
    "down2": ({DOWN: T(128, 128, 8, 11, 2)}, 16),
    "gu2": ({GU: T(64, 256, 4, 1, 2)}, 16),
    "gu2_down2": ({GU: T(64, 256, 4, 1, 2), DOWN: T(128, 128, 8, 11, 2)}, 16),
    "down2_qkv12": ({DOWN: T(128, 128, 8, 11, 2), QKV: T(64, 256, 4, 12, 2)}, 16),
    "attn32": ({}, 32),
    "attn8": ({}, 8),
}
out = sys.argv[1]
env = environment(); bw = copy_bandwidth()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
N = 131072
floors = {B: 1e3 * (weight_bytes(model, B) + cache_bytes_read(model.config, B, N)) / bw for B in (1, 8)}
print("env", json.dumps(dict(env, copy_TBps=bw / 1e12, floor_ms=floors)), flush=True)
with open(f"{out}/a.jsonl", "a") as f:
    f.write(json.dumps(dict(env=env, copy_TBps=bw / 1e12, floor_ms=floors)) + "\n")
for rnd in range(int(sys.argv[2])):
    for name, (table, ss) in V.items():
        tg._OVERRIDES.clear(); tg._OVERRIDES.update(table); td.SHORT_SPLITS = ss
        for B in (1, 8):
            rec = dict(round=rnd, variant=name, B=B, step_ms=time_step(model, "triton", B, N, rep=200))
            gc.collect(); torch.cuda.empty_cache()
            if rnd == 0:
                t = graph_profile(model, "triton", B, N, replays=10)
                gc.collect(); torch.cuda.empty_cache()
                pos = t["by_position"]
                rec["span_us"] = t["span_us"]
                rec["gemv_seq"] = [round(p["us"], 2) for p in pos if p["kernel"].startswith("_gemv")]
                rec["attn_seq"] = [round(p["us"], 2) for p in pos if p["kernel"].startswith("_attn")]
                rec["by_kernel"] = {r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:8]}
            rec["x_floor"] = rec["step_ms"] / floors[B]
            print("step", json.dumps({k: v for k, v in rec.items() if not k.endswith("_seq")}), flush=True)
            with open(f"{out}/a.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
tg._OVERRIDES.clear(); td.SHORT_SPLITS = 16
