"""Where a decode step's time goes: GPU kernel time by kernel, summed over eager steps (the same
kernels a CUDA graph replays), next to the graph-replayed step time. The difference is launch and
inter-kernel gaps that the graph does not remove.

With MODE=prefill: the same table for one prompt's prefill (time to first token), the way
``clsa bench prefill`` runs it (YOCO: self-decoder in 16K-token chunks, cross-decoder for the last
token only), next to the CUDA-event time of that prefill.

    OUT=/tmp/out PYTHONPATH=. python benchmarks/profile_step.py            # clsa/triton, 128K
    VARIANT=dense BACKEND=torch BATCHES=1,4 python benchmarks/profile_step.py
    MODE=prefill CONTEXT=131072 python benchmarks/profile_step.py
    MODE=prefill CLSA_FLEX_PREFILL=0 TAG=_sdpa python benchmarks/profile_step.py   # masked SDPA
"""

import gc
import json
import os
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from clsa import ops
from clsa.bench.decode import build_model, decode_step_fn, time_step
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for


def kernel_table(model, backend: str, B: int, N: int, steps: int = 5) -> dict:
    with ops.use_backend(backend), torch.no_grad():
        step, _ = decode_step_fn(model, B, N)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
    return _table(prof, steps)


def _table(prof, steps: int) -> dict:
    per = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per[e.name][0] += e.device_time / steps / 1e3  # ms per step
            per[e.name][1] += 1
    rows = sorted(({"kernel": k[:120], "ms_per_step": v[0], "launches_per_step": v[1] / steps}
                   for k, v in per.items()), key=lambda r: -r["ms_per_step"])
    return {"kernels": rows, "kernel_ms_per_step": sum(r["ms_per_step"] for r in rows),
            "launches_per_step": sum(r["launches_per_step"] for r in rows)}


@torch.no_grad()
def prefill_table(model, backend: str, N: int) -> dict:
    from clsa.bench.modes import time_to_first_token
    from clsa.engine import Decoder

    ttft = time_to_first_token(model, backend, N)
    ids = torch.randint(0, model.config.vocab_size, (1, N), device=model.device)
    chunk = model.config.self_decoder_chunk
    model.config.self_decoder_chunk = N if not model.config.is_yoco else 16384
    with ops.use_backend(backend):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            Decoder(model, 1, N + 1, cuda_graph=False).prefill(ids)
            torch.cuda.synchronize()
    model.config.self_decoder_chunk = chunk
    t = _table(prof, 1)
    t.update(ttft_ms=ttft, gap_ms=ttft - t["kernel_ms_per_step"])
    return t


def _print_top(rows, n: int) -> None:
    for r in rows[:n]:
        print(f"  {r['ms_per_step']:.4f} ms  x{r['launches_per_step']:.0f}  {r['kernel'][:100]}")


def main():
    out = os.environ.get("OUT", ".")
    variant, backend = os.environ.get("VARIANT", "clsa"), os.environ.get("BACKEND", "triton")
    N = int(os.environ.get("CONTEXT", 131072))
    tag = os.environ.get("TAG", "")  # appended to the file name, e.g. "_noflex"
    model = build_model(config_for("yoco-3b", Row(variant, backend, 4 if variant == "indexcache" else 1)))
    res = {"env": environment(), "row": f"{variant}/{backend}", "N": N, "batches": []}
    if os.environ.get("MODE") == "prefill":
        t = res["prefill"] = prefill_table(model, backend, N)
        print(f"{variant}/{backend} prefill N={N}: {t['ttft_ms']:.1f} ms, kernels "
              f"{t['kernel_ms_per_step']:.1f} ms in {t['launches_per_step']:.0f} launches")
        _print_top(t["kernels"], 25)
        with open(os.path.join(out, f"profile_prefill_{variant}_{backend}{tag}.json"), "w") as f:
            json.dump(res, f, indent=1)
        return
    for B in [int(b) for b in os.environ.get("BATCHES", "1,4").split(",")]:
        t = kernel_table(model, backend, B, N)
        gc.collect()  # the profiled step's cache lives in a closure cycle: free it before timing
        torch.cuda.empty_cache()
        t.update(B=B, graph_step_ms=time_step(model, backend, B, N, rep=100))
        t["gap_ms"] = t["graph_step_ms"] - t["kernel_ms_per_step"]
        res["batches"].append(t)
        print(f"{variant}/{backend} B={B} N={N}: graph step {t['graph_step_ms']:.3f} ms, kernels "
              f"{t['kernel_ms_per_step']:.3f} ms in {t['launches_per_step']:.0f} launches, gaps {t['gap_ms']:.3f} ms")
        _print_top(t["kernels"], 14)
    with open(os.path.join(out, f"profile_{variant}_{backend}{tag}.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
