"""Session 9 call B: the NARROW gemv tilings against the rule (isolated chains, M = 1 and 8), then
the decode step with the winners as overrides vs the rule, alternating, at 128K, B = 1 and 8."""
import gc, json, os, sys
import torch
from clsa.bench.decode import build_model, time_step
from clsa.bench.floor import cache_bytes_read, copy_bandwidth, weight_bytes
from clsa.bench.suite import Row, config_for
from clsa.ops.linear import bench, triton_gemv as tg

out = sys.argv[1]
recs, best = bench.sweep_wide((1, 8), narrow=True)
with open(f"{out}/narrow_sweep.jsonl", "w") as f:
    for r in recs:
        f.write(json.dumps(r) + "\n")
with open(f"{out}/narrow_best.json", "w") as f:
    json.dump(best, f, indent=1)
print("best", json.dumps(best), flush=True)
gc.collect(); torch.cuda.empty_cache()
N = 131072
bw = copy_bandwidth()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
small = {k: v for k, v in best.items() if k.endswith(",3072") and not k.startswith("16384")}
variants = {"rule": {}, "best": best, "best_qko": small}
for rnd in range(2):
    for B in (1, 8):
        floor_ms = 1e3 * (weight_bytes(model, B) + cache_bytes_read(model.config, B, N)) / bw
        for name, table in variants.items():
            tg._OVERRIDES.clear()
            tg._OVERRIDES.update(table)
            ms = time_step(model, "triton", B, N, rep=200)
            gc.collect(); torch.cuda.empty_cache()
            print("step", json.dumps(dict(round=rnd, B=B, variant=name, step_ms=ms, floor_ms=floor_ms,
                                          x_floor=ms / floor_ms, copy_TBps=bw / 1e12)), flush=True)
tg._OVERRIDES.clear()
