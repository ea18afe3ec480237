"""Decode-step A/B of the L2 prefetch budget and evict-first weight loads, one process, one model.
python runs/pf_ab.py [ROUNDS]; one JSON line per (round, B, variant)."""
import gc, json, os, sys
import torch
from clsa.bench.decode import build_model, time_step
from clsa.bench.floor import cache_bytes_read, copy_bandwidth, weight_bytes
from clsa.bench.suite import Row, config_for

N = 131072
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
variants = [x.split(":") for x in os.environ.get("VARIANTS", "0:0,16:0,32:0,8:0,16:1,0:1").split(",")]
bw = copy_bandwidth()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for rnd in range(rounds):
    for B in (1, 8):
        floor_ms = 1e3 * (weight_bytes(model, B) + cache_bytes_read(model.config, B, N)) / bw
        for mb, ev in variants:
            os.environ["CLSA_L2_PREFETCH_MB"], os.environ["CLSA_GEMV_EVICT_FIRST"] = mb, ev
            ms = time_step(model, "triton", B, N, rep=200)
            gc.collect()
            torch.cuda.empty_cache()
            print("pf", json.dumps(dict(round=rnd, B=B, mb=float(mb), evict_first=ev == "1", step_ms=ms,
                                        floor_ms=floor_ms, x_floor=ms / floor_ms, copy_TBps=bw / 1e12)),
                  flush=True)
