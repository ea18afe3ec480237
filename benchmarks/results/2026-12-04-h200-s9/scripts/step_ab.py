"""Decode-step timing per tree: python runs/step_ab.py TAG (PYTHONPATH = the tree); clsa/triton at
128K, B = 1 and 8, with the floor from the same run's copy bandwidth."""
import gc, json, sys
import torch
from clsa.bench.decode import build_model, time_step
from clsa.bench.floor import cache_bytes_read, copy_bandwidth, weight_bytes
from clsa.bench.suite import Row, config_for

tag, N = sys.argv[1], 131072
bw = copy_bandwidth()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for B in (1, 8):
    floor_ms = 1e3 * (weight_bytes(model, B) + cache_bytes_read(model.config, B, N)) / bw
    ms = time_step(model, "triton", B, N, rep=200)
    gc.collect(); torch.cuda.empty_cache()
    print("step", json.dumps(dict(tree=tag, B=B, step_ms=ms, floor_ms=floor_ms, x_floor=ms / floor_ms,
                                  copy_TBps=bw / 1e12)), flush=True)
