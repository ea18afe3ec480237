"""Masked GQA attention with stock PyTorch fast paths (SDPA in the input dtype): the baseline.

Same signature and masking rule as naive.py (``ring``: the layout hint documented there). With no
padding, no window and every key row visible (a dense cache read to its last slot), call sites may
pass ``k_pos=None`` to say so; SDPA then takes its mask-free FlashAttention path, the fastest
stock decode.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from clsa.ops.attention.naive import visible_mask
from clsa.ops.cache_write.naive import ring_write
from clsa.ops.rotary.naive import rotary

# Sliding-window prefill in the ring layout: "auto" runs FlexAttention on CUDA (flex_window.py)
# and masked SDPA elsewhere; "on" / "off" force either (tests; CLSA_FLEX_PREFILL=0 at run time).
# Inference only: training (autograd) keeps the SDPA path.
FLEX_PREFILL = {"0": "off", "1": "on"}.get(os.environ.get("CLSA_FLEX_PREFILL", ""), "auto")


def plain_causal_len(q_pos, k_pos, kv_start, window) -> int | None:
    """T when T >= 2 queries sit at positions 0..T-1 of every unpadded row, the first T key slots
    are theirs, and any later slots (a static cache's unwritten tail) lie in their future: then
    causal attention over ``k[:, :T]`` is exact. None otherwise. Checks values (one host sync):
    prefill only, never inside a captured decode step."""
    B, T = q_pos.shape
    if window is not None or T < 2 or k_pos.shape[1] < T or kv_start.any():
        return None
    causal = torch.equal(q_pos, torch.arange(T, device=q_pos.device).expand(B, T))
    if not causal or not torch.equal(k_pos[:, :T].expand(B, T), q_pos):
        return None
    if k_pos.shape[1] > T and int(k_pos[:, T:].min()) < T:
        return None
    return T


def ring_prefix(q_pos, k_pos, window) -> int | None:
    """W when the keys are laid out as RingKV.update returns them for a prefill chunk: W older
    slots (the ring, any order), then the T queries' own slots, with every row's q_pos contiguous.
    A query chunk [s, e) then reaches only keys [0 or W + s - window + 1, W + e): its slice is
    known without looking at the mask. None otherwise. One host sync: prefill only."""
    B, T = q_pos.shape
    W = k_pos.shape[1] - T
    if window is None or W < 0:
        return None
    steps = torch.arange(T, device=q_pos.device)
    ok = (k_pos[:, W:] == q_pos).all() & (q_pos == q_pos[:, :1] + steps).all()
    return W if bool(ok) else None


def attention(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
              scale: float | None = None, query_chunk: int = 1024, ring: int | None = None,
              rope=None, kv_ready: bool = False):
    if rope is not None:
        q = rotary(q, *rope)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
    if k_pos is None:
        return F.scaled_dot_product_attention(qt, kt, vt, scale=scale, enable_gqa=True).transpose(1, 2)
    T = plain_causal_len(q_pos, k_pos, kv_start, window)
    if T is not None:  # a whole unpadded prompt: flash causal over its own T slots
        return F.scaled_dot_product_attention(qt, kt[:, :, :T], vt[:, :, :T], is_causal=True,
                                              scale=scale, enable_gqa=True).transpose(1, 2)
    outs = []
    trim = window is not None and q.shape[1] > query_chunk  # long windowed prefill, never decode
    # the layout: from the caller's hint, else checked on the values (a host sync per call)
    W = (ring if ring is not None else ring_prefix(q_pos, k_pos, window)) if trim else None
    if W is not None and FLEX_PREFILL != "off" and not (torch.is_grad_enabled() and q.requires_grad):
        from clsa.ops.attention import flex_window  # inference: FlexAttention over the band
        if FLEX_PREFILL == "on" or (q.is_cuda and flex_window.supported(q)):
            return flex_window.window_prefill(q, k, v, q_pos, k_pos, kv_start, window, scale)
    for s in range(0, q.shape[1], query_chunk):
        e = min(s + query_chunk, q.shape[1])
        if W is not None:  # the chunk's window, from the layout alone: no mask scan, no sync
            lo = 0 if s - window + 1 <= 0 else W + s - window + 1
            m = visible_mask(q_pos[:, s:e], k_pos[:, lo:W + e], kv_start, window)[:, None]
            o = F.scaled_dot_product_attention(qt[:, :, s:e], kt[:, :, lo:W + e], vt[:, :, lo:W + e],
                                               attn_mask=m, scale=scale, enable_gqa=True)
            outs.append(o)
            continue
        m = visible_mask(q_pos[:, s:s + query_chunk], k_pos, kv_start, window)[:, None]
        ks, vs = kt, vt
        if trim:  # attend only to the key slots this chunk's window reaches (one host sync)
            cols = m.flatten(0, 2).any(0).nonzero()
            lo, hi = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)
            m, ks, vs = m[..., lo:hi], kt[:, :, lo:hi], vt[:, :, lo:hi]
        o = F.scaled_dot_product_attention(qt[:, :, s:s + query_chunk], ks, vs, attn_mask=m,
                                           scale=scale, enable_gqa=True)
        outs.append(o)
    return torch.cat(outs, 2).transpose(1, 2).nan_to_num(0.0)  # rows with no visible key -> 0


def ring_attention(q, k, v, k_ring, v_ring, pos_ring, q_pos, kv_start, window: int | None = None,
                   scale: float | None = None, rope=None):
    """``naive.ring_attention`` on stock ops: ``index_copy_`` into the ring, then ``attention``."""
    ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope)
    return attention(q, k_ring, v_ring, q_pos, pos_ring.expand(q.shape[0], -1), kv_start, window,
                     scale, rope=rope)
