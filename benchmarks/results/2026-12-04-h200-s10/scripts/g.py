"""Session 10 call G: replay span of the decode step (clsa/triton, 128K) for the tree on PYTHONPATH
(TREE names it), B = 1, 2, 4, 8; appends one JSON line per B to OUT/g.jsonl."""
import gc, json, os, sys
import torch
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from profile_graph import graph_profile
from clsa.bench.decode import build_model
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for

env = environment()
model = build_model(config_for("yoco-3b", Row("clsa", "triton")))
for B in (1, 2, 4, 8):
    t = graph_profile(model, "triton", B, 131072, replays=10)
    gc.collect(); torch.cuda.empty_cache()
    rec = dict(tree=os.environ["TREE"], B=B, span_us=t["span_us"],
               by_kernel={r["kernel"][:40]: round(r["us"], 1) for r in t["by_kernel"][:10]})
    print("prof", json.dumps(rec), flush=True)
    with open(f"{sys.argv[1]}/g.jsonl", "a") as f:
        f.write(json.dumps(dict(rec, env=env)) + "\n")
