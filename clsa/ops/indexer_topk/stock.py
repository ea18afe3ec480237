"""Indexer scoring + top-k with stock PyTorch (bmm in the input dtype + torch.topk): the baseline.

Same signatures as naive.py, except that the valid indices come in score order, not ascending
(the sort is not part of the stock path; every consumer treats the index as a set).

8-bit keys (``k_scale`` given): the int8 keys are converted to q's dtype (exact: |k_q| <= 127) for
the bmm, and the per-slot scale multiplies the head-mixed [B, Tq, S] scores afterwards (k_scale > 0
commutes with relu), so the scale costs S multiplies per query instead of S * Di.
"""

from __future__ import annotations

import math

import torch


def indexer_scores(q, k, w, q_pos, kv_start, scoring: str = "dot", scale: float | None = None,
                   *, k_scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    B, Tq, Hi, Di = q.shape
    if k_scale is not None:
        k = k.to(q.dtype)
    dots = torch.bmm(q.reshape(B, Tq * Hi, Di), k.transpose(1, 2)).view(B, Tq, Hi, -1)  # [B,Tq,Hi,S]
    if scoring == "relu":
        dots = torch.relu(dots)
    s = (dots.sum(2) if w is None else (dots * w[..., None].to(dots.dtype)).sum(2)).float() * scale
    if k_scale is not None:
        s = s * k_scale[:, None, :].float()
    slots = torch.arange(k.shape[1], device=k.device)
    visible = (slots[None, None] <= q_pos[:, :, None]) & (slots[None, None] >= kv_start[:, None, None])
    return s.masked_fill(~visible, float("-inf"))


def indexer_topk(q, k, w, q_pos, kv_start, top_k: int, scoring: str = "dot",
                 scale: float | None = None, query_chunk: int = 1024, *, k_scale=None):
    B, Tq = q.shape[:2]
    kk = min(top_k, k.shape[1])
    if k_scale is not None:  # convert once, not per query chunk
        k = k.to(q.dtype)
    outs = []
    for s in range(0, Tq, query_chunk):
        sc = indexer_scores(q[:, s:s + query_chunk], k, None if w is None else w[:, s:s + query_chunk],
                            q_pos[:, s:s + query_chunk], kv_start, scoring, scale, k_scale=k_scale)
        val, ix = sc.topk(kk, dim=-1)
        outs.append(torch.where(torch.isfinite(val), ix, -1).int())
    idx = torch.cat(outs, 1)
    if kk < top_k:
        idx = torch.cat([idx, idx.new_full((B, Tq, top_k - kk), -1)], -1)
    return idx
