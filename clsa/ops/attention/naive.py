"""Masked GQA attention, plain PyTorch (fp32 math): the reference for every attention kernel.

Shape legend
    B batch, Tq queries, S key slots, Hq query heads, Hkv K/V heads (Hq % Hkv == 0), D head dim.
    q        [B, Tq, Hq, D]
    k, v     [B, S, Hkv, D]
    q_pos    [B, Tq] int   slot index of each query (its place in the sequence of cache slots)
    k_pos    [B, S]  int   slot index held by each key row, -1 for an empty row; None means every
                           row is visible to every query (the caller guarantees it: no mask)
    kv_start [B]     int   first valid slot of each sequence (left padding before it)
    out      [B, Tq, Hq, D]

A key is visible to a query iff kv_start[b] <= k_pos <= q_pos and, with a window W,
k_pos > q_pos - W (the query sees itself and the W-1 slots before it). A query that sees no key
returns zeros. The same function serves dense causal attention (k_pos = arange), the sliding
window over a ring buffer (k_pos = slot of each ring entry), and decode over a gathered top-k
buffer (k_pos = the selected slots, -1 padded).
"""

from __future__ import annotations

import math

import torch

from clsa.ops.cache_write.naive import ring_write
from clsa.ops.rotary.naive import rotary


def visible_mask(q_pos, k_pos, kv_start, window: int | None):
    """[B, Tq, S] bool: which keys each query may attend to (see module docstring)."""
    if k_pos is None:
        raise ValueError("visible_mask needs k_pos; k_pos=None is handled by attention()")
    qp = q_pos[:, :, None].long()
    kp = k_pos[:, None, :].long()
    m = (kp >= kv_start.long()[:, None, None]) & (kp <= qp) & (kp >= 0)
    if window is not None:
        m &= kp > qp - window
    return m


def attention(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
              scale: float | None = None, query_chunk: int = 256, ring: int | None = None,
              rope=None, kv_ready: bool = False):
    """Attention of ``q`` over the visible keys; computed in query chunks of ``query_chunk``.

    ``ring`` is a layout hint fast paths may use (stock.py): the caller guarantees that key rows
    [0, ring) hold older slots in any order and rows [ring, ring + Tq) the queries' own slots,
    the queries at contiguous positions. The result never depends on it.

    ``rope`` = (cos, sin) fp32 [B, Tq, D/2]: rotate q by them first (``rotary.naive.rotary``), so
    callers hand over the unrotated query and kernels may fuse the rotation into their load.

    ``kv_ready`` is a scheduling hint the result never depends on. The caller guarantees that
    k, v and k_pos were written before the launch before this call began, and that q_pos,
    kv_start and the rope tables were too: then a kernel launched early (programmatic dependent
    launch) may read them before it waits for that launch, which writes only q. In the decode
    step that holds for every cross-decoder layer but one that follows a new index or gather:
    the attention launch of the layer before lies between (README.md of ``ops/attention``).

    Memory is O(B * Hq * query_chunk * S) at a time, never O(Tq * S) for the whole sequence.
    Differentiable (used by training on CPU).
    """
    if rope is not None:
        q = rotary(q, *rope)
    B, Tq, Hq, D = q.shape
    Hkv, S = k.shape[2], k.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    g = Hq // Hkv
    kf = k.float().repeat_interleave(g, dim=2).transpose(1, 2)  # [B, Hq, S, D]
    vf = v.float().repeat_interleave(g, dim=2).transpose(1, 2)
    outs = []
    for s in range(0, Tq, query_chunk):
        qc = q[:, s:s + query_chunk].float().transpose(1, 2)  # [B, Hq, C, D]
        if k_pos is None:
            m = torch.ones(B, qc.shape[2], S, dtype=torch.bool, device=q.device)
        else:
            m = visible_mask(q_pos[:, s:s + query_chunk], k_pos, kv_start, window)  # [B, C, S]
        logits = torch.einsum("bhcd,bhsd->bhcs", qc, kf) * scale
        logits = logits.masked_fill(~m[:, None], float("-inf"))
        p = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # rows with no visible key -> 0
        outs.append(torch.einsum("bhcs,bhsd->bhcd", p, vf).transpose(1, 2))
    return torch.cat(outs, dim=1).to(q.dtype)


def ring_attention(q, k, v, k_ring, v_ring, pos_ring, q_pos, kv_start, window: int | None = None,
                   scale: float | None = None, rope=None):
    """Decode over a sliding-window ring: write this step's K/V row into it, then attend over it.

    q [B, 1, Hq, D]; k, v [B, 1, Hkv, D] the new token's K/V (k before rotary); k_ring, v_ring
    [B, W, Hkv, D] and pos_ring [W] the ring (``cache_write.naive``), written in place; rope the
    token's (cos, sin) [B, 1, D/2], for q and k alike. The result is
    ``ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope)`` followed by
    ``attention(q, k_ring, v_ring, q_pos, pos_ring.expand(B, W), kv_start, window, scale,
    rope=rope)``. Kernels fuse the two (the row joins the softmax as it is written)."""
    ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope)
    return attention(q, k_ring, v_ring, q_pos, pos_ring.expand(q.shape[0], -1), kv_start, window,
                     scale, rope=rope)
