"""GPU timing of the indexer top-k: the Triton path against stock PyTorch (bmm + torch.topk).

    python -c "from clsa.ops.indexer_topk.bench import bench_indexer_topk as b; print(b(1))"
    python -c "from clsa.ops.indexer_topk.bench import bench_indexer_topk as b; print(b(8))"

Needs a CUDA GPU; tests never call it. Decode shape: one query per sequence, every sequence at
q_pos = S - 1. Before timing, the Triton selection is checked against the stock one (sum of the
selected fp32 scores, which tolerates swaps among near-tied threshold scores); a failing check
raises instead of reporting a speed.
"""

from __future__ import annotations

import math

import torch
import triton

from clsa.ops.indexer_topk import triton_topk


def _stock(q, k, w, top_k):
    """bmm over all slots, head mix, torch.topk: what a plain PyTorch decode step does."""
    B, _, Hi, Di = q.shape
    s = torch.bmm(q.view(B, Hi, Di), k.transpose(1, 2)).float()  # [B, Hi, S]
    s = s[:, 0] if w is None else (s.relu() * w.view(B, Hi, 1)).sum(1)
    return s.topk(top_k, dim=-1).indices


def bench_indexer_topk(B: int, S: int = 131072, Hi: int = 1, Di: int = 128, k: int = 2048,
                       dtype: torch.dtype = torch.bfloat16, graph: bool = True) -> dict:
    """Median microseconds: ``triton_us`` / ``stock_us`` (plain launches, ``do_bench``) and, with
    ``graph``, ``triton_graph_us`` / ``stock_graph_us`` (CUDA-graph replays, no launch gaps).
    ``key_read_GBps`` is the key cache bytes over the Triton time (the floor is one read)."""
    dev = "cuda"
    gen = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(B, 1, Hi, Di, device=dev, generator=gen).to(dtype)
    keys = torch.randn(B, S, Di, device=dev, generator=gen).to(dtype)
    w = torch.rand(B, 1, Hi, device=dev, generator=gen) if Hi > 1 else None
    scoring = "dot" if w is None else "relu"
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=dev)
    kv_start = torch.zeros(B, dtype=torch.long, device=dev)

    def run_triton():
        return triton_topk.indexer_topk(q, keys, w, q_pos, kv_start, k, scoring)

    def run_stock():
        return _stock(q, keys, w, k)

    # correctness first: compare the fp32 score mass of both selections
    scores = torch.bmm(q.view(B, Hi, Di).float(), keys.float().transpose(1, 2))
    scores = scores[:, 0] if w is None else (scores.relu() * w.view(B, Hi, 1)).sum(1)
    idx = run_triton().view(B, k).long()
    got = torch.where(idx >= 0, scores.gather(1, idx.clamp(min=0)), 0.).sum(-1)
    want = scores.gather(1, run_stock()).sum(-1)
    if not (got >= want - 1e-5 * want.abs() - 1e-3).all():
        raise RuntimeError(f"Triton top-k selection differs from torch.topk: {got} vs {want}")

    res = {
        "triton_us": 1e3 * triton.testing.do_bench(run_triton, return_mode="median"),
        "stock_us": 1e3 * triton.testing.do_bench(run_stock, return_mode="median"),
    }
    if graph:
        res["triton_graph_us"] = 1e3 * triton.testing.do_bench_cudagraph(run_triton,
                                                                         return_mode="median")
        res["stock_graph_us"] = 1e3 * triton.testing.do_bench_cudagraph(run_stock,
                                                                        return_mode="median")
    best = min(res["triton_us"], res.get("triton_graph_us", math.inf))
    res["key_read_GBps"] = B * S * Di * keys.element_size() / (best * 1e-6) / 1e9
    return res
