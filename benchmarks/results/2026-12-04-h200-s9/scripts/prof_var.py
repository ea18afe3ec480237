"""Session 9 call F: critical-path graph profiles of the decode step under gemv tiling overrides
for QKV (5120,3072) and down (3072,8192), 128K, B = 1 and 8. One JSON line per (variant, B) with
the replay span and the mean charge per op kind (QKV, Q, O, gate/up, down by launch position)."""
import gc, json, sys
import torch
sys.path.insert(0, "benchmarks")
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.suite import Row, config_for
from clsa.ops.linear import triton_gemv as tg

def T(bn, bk, w, sp, st):
    return dict(BN=bn, BK=bk, num_warps=w, SPLIT=sp, num_stages=st)

QKV, DOWN = "5120,3072", "3072,8192"
variants = {
    "rule": {},
    "qkv12": {QKV: T(64, 256, 4, 12, 2)},
    "qkv12_8w": {QKV: T(64, 256, 8, 12, 2)},
    "down16": {DOWN: T(64, 256, 4, 16, 3)},
    "down22": {DOWN: T(128, 128, 8, 22, 2)},
    "qkv12_down16": {QKV: T(64, 256, 4, 12, 2), DOWN: T(64, 256, 4, 16, 3)},
    "qkv12_down22": {QKV: T(64, 256, 4, 12, 2), DOWN: T(128, 128, 8, 22, 2)},
}
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
out = sys.argv[1]
for rnd in range(2 if len(sys.argv) < 3 else int(sys.argv[2])):
    for name, table in variants.items():
        tg._OVERRIDES.clear(); tg._OVERRIDES.update(table)
        for B in (1, 8):
            t = graph_profile(model, "triton", B, 131072, replays=10)
            gc.collect(); torch.cuda.empty_cache()
            pos = t["by_position"]
            g = [p for p in pos if p["kernel"].startswith("_gemv")]
            # gemv order per layer: in-proj (QKV or Q), O, gate/up, down; shared K/V + indexer in between
            kinds = {}
            first = [p["pos"] for p in pos if p["kernel"].startswith("_gemv")][0]
            rec = dict(round=rnd, variant=name, B=B, span_us=t["span_us"], idle_us=t["idle_us"],
                       by_kernel={r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:8]})
            # self layers: positions 3..86 hold 13 x (in, ring, attn, O, gu, down) after the prologue
            seq = [p for p in pos]
            gem = [p["us"] for p in seq if p["kernel"].startswith("_gemv")]
            rec["gemv_seq"] = [round(x, 2) for x in gem]
            rec["attn_seq"] = [round(p["us"], 2) for p in seq if p["kernel"].startswith("_attn")]
            print("prof", json.dumps(rec), flush=True)
            with open(f"{out}/prof_var.jsonl", "a") as f:
                f.write(json.dumps(dict(rec, by_position=pos)) + "\n")
tg._OVERRIDES.clear()
