"""Where a CUDA-graph-replayed decode step spends its time, kernel by kernel, on the critical path.

``profile_step.py`` profiles eager steps. With programmatic dependent launch a kernel starts
before the one ahead of it ends (it loads its first weights, then waits), so eager kernel times
overlap and do not add up to the step. This profiles replays of the captured step (CUPTI traces
the kernels of a graph) and charges every stretch of the replay to the kernel that ends it:
a kernel owns [max(its start, the previous kernel's end), its end], and the stretches between
kernels when nothing runs are ``idle``. The charges of one replay add up to its span. Per kernel
name (summed) and per launch position in the step (the step launches the same kernels in the
same order every time, so position p is the same op in every replay).

    OUT=/tmp/out PYTHONPATH=. python benchmarks/profile_graph.py        # clsa/triton, 128K, B = 1, 8
    VARIANT=dense BACKEND=torch BATCHES=1 python benchmarks/profile_graph.py
"""

import json
import os
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from clsa import ops
from clsa.bench.decode import build_model, decode_step_fn
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.bench.timeline import critical_path


@torch.no_grad()
def graph_profile(model, backend: str, B: int, N: int, replays: int = 10) -> dict:
    with ops.use_backend(backend):
        step, _ = decode_step_fn(model, B, N)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # compile and warm up off the capture
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        for _ in range(3):
            graph.replay()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(replays):
                graph.replay()
                torch.cuda.synchronize()  # replays apart: no kernel of one overlaps the next
    evs = sorted(((e.name, e.time_range.start, e.time_range.end) for e in prof.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA), key=lambda k: k[1])
    if not evs or len(evs) % replays:
        raise RuntimeError(f"{len(evs)} kernel events for {replays} replays: CUPTI did not trace "
                           "the graph's kernels one for one")
    n = len(evs) // replays
    per_name = defaultdict(lambda: [0.0, 0])
    per_pos = [[evs[p][0][:80], 0.0] for p in range(n)]
    spans, idles = [], []
    for r in range(replays):
        run = evs[r * n:(r + 1) * n]
        charges, idle = critical_path(run)
        spans.append(run[-1][2] - run[0][1])
        idles.append(idle)
        for p, ((name, _, _), c) in enumerate(zip(run, charges)):
            per_name[name][0] += c / replays
            per_name[name][1] += 1 / replays
            per_pos[p][1] += c / replays
    names = sorted(({"kernel": k[:120], "us": v[0], "launches": v[1]} for k, v in per_name.items()),
                   key=lambda r: -r["us"])
    return {"B": B, "N": N, "launches": n, "span_us": sorted(spans)[len(spans) // 2],
            "idle_us": sorted(idles)[len(idles) // 2], "by_kernel": names,
            "by_position": [{"pos": p, "kernel": k, "us": us} for p, (k, us) in enumerate(per_pos)]}


def main():
    out = os.environ.get("OUT", ".")
    variant, backend = os.environ.get("VARIANT", "clsa"), os.environ.get("BACKEND", "triton")
    N = int(os.environ.get("CONTEXT", 131072))
    model = build_model(config_for("yoco-3b", Row(variant, backend)))
    res = {"env": environment(), "row": f"{variant}/{backend}", "batches": []}
    for B in [int(b) for b in os.environ.get("BATCHES", "1,8").split(",")]:
        t = graph_profile(model, backend, B, N)
        res["batches"].append(t)
        print(f"{variant}/{backend} B={B} N={N}: replay span {t['span_us']:.1f} us, "
              f"{t['launches']} launches, idle {t['idle_us']:.1f} us", flush=True)
        for r in t["by_kernel"][:16]:
            print(f"  {r['us']:8.1f} us  x{r['launches']:.0f}  {r['kernel'][:90]}", flush=True)
        with open(os.path.join(out, f"graph_profile_{variant}_{backend}.json"), "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
