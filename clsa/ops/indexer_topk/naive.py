"""Indexer scoring and top-k selection, plain PyTorch (fp32 math).

Shape legend
    q        [B, Tq, Hi, Di]   indexer queries (Hi indexer heads)
    k        [B, S, Di]        indexer keys, one per slot, shared by all indexer heads (MQA);
                               int8 when k_scale is given
    k_scale  [B, S] fp32       per-slot scale of 8-bit keys (None: k holds the keys themselves);
                               the key of slot j is k[b, j].float() * k_scale[b, j] (quant.py)
    w        [B, Tq, Hi]       per-head weights (relu scoring); None means 1 for every head
    q_pos    [B, Tq] int       slot index of each query
    kv_start [B] int           first valid slot of each sequence
    scores   [B, Tq, S] fp32   -inf where the slot is not visible (after q_pos, before kv_start)
    idx      [B, Tq, K] int32  selected slots in ascending order, -1 padding at the end

scoring "dot":  s = scale * sum_h w_h * (q_h . k)
scoring "relu": s = scale * sum_h w_h * relu(q_h . k)          (DeepSeek DSA)
The reference dequantizes 8-bit keys to fp32 first; the kernels factor k_scale out instead.
A query with at most K visible slots selects all of them, so sparse == dense exactly.
"""

from __future__ import annotations

import math

import torch

from clsa.ops.indexer_topk.quant import dequantize_keys


def indexer_scores(q, k, w, q_pos, kv_start, scoring: str = "dot", scale: float | None = None,
                   *, k_scale=None):
    """Scores of every query against every slot; [B, Tq, S] fp32 with -inf where invisible."""
    if k_scale is not None:
        k = dequantize_keys(k, k_scale)
    Di = q.shape[-1]
    scale = 1.0 / math.sqrt(Di) if scale is None else scale
    dots = torch.einsum("bthd,bsd->bths", q.float(), k.float())
    if scoring == "relu":
        dots = torch.relu(dots)
    weights = torch.ones_like(dots[..., 0]) if w is None else w.float()
    s = torch.einsum("bths,bth->bts", dots, weights) * scale
    slots = torch.arange(k.shape[1], device=k.device)
    visible = (slots[None, None, :] <= q_pos[:, :, None]) & (slots[None, None, :] >= kv_start[:, None, None])
    return s.masked_fill(~visible, float("-inf"))


def indexer_topk(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                 scale: float | None = None, query_chunk: int = 256, *, k_scale=None):
    """Top-``top_k`` visible slots per query; [B, Tq, top_k] int32, ascending, -1 padded."""
    if k_scale is not None:  # once, not per query chunk
        k = dequantize_keys(k, k_scale)
    B, Tq = q.shape[:2]
    S = k.shape[1]
    out = torch.full((B, Tq, top_k), -1, dtype=torch.int32, device=q.device)
    kk = min(top_k, S)
    for s in range(0, Tq, query_chunk):
        sc = indexer_scores(q[:, s:s + query_chunk], k, None if w is None else w[:, s:s + query_chunk],
                            q_pos[:, s:s + query_chunk], kv_start, scoring, scale)
        val, ix = sc.topk(kk, dim=-1)
        ix = torch.where(torch.isfinite(val), ix, torch.full_like(ix, S))  # invisible -> sentinel
        ix = ix.sort(dim=-1).values
        out[:, s:s + query_chunk, :kk] = torch.where(ix < S, ix, torch.full_like(ix, -1)).int()
    return out
