"""Masked GQA attention with stock PyTorch fast paths (SDPA in the input dtype): the baseline.

Same signature and masking rule as naive.py. With no padding, no window and every key row
visible (a dense cache read to its last slot), call sites may pass ``k_pos=None`` to say so; SDPA
then takes its mask-free FlashAttention path, the fastest stock decode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clsa.ops.attention.naive import visible_mask


def is_plain_causal(q_pos, k_pos, kv_start, window) -> bool:
    """True for many queries over exactly their own slots 0..T-1, unpadded, no window. Checks
    values (one host sync): prefill only, never inside a captured decode step."""
    if window is not None or q_pos.shape[1] < 2 or tuple(q_pos.shape) != tuple(k_pos.shape):
        return False
    return bool(torch.equal(q_pos, k_pos) and not kv_start.any() and int(q_pos[0, 0]) == 0)


def attention(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
              scale: float | None = None, query_chunk: int = 1024):
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
    if k_pos is None:
        return F.scaled_dot_product_attention(qt, kt, vt, scale=scale, enable_gqa=True).transpose(1, 2)
    if is_plain_causal(q_pos, k_pos, kv_start, window):  # a whole unpadded prompt: flash causal
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale,
                                              enable_gqa=True).transpose(1, 2)
    outs = []
    for s in range(0, q.shape[1], query_chunk):
        m = visible_mask(q_pos[:, s:s + query_chunk], k_pos, kv_start, window)[:, None]
        o = F.scaled_dot_product_attention(qt[:, :, s:s + query_chunk], kt, vt, attn_mask=m,
                                           scale=scale, enable_gqa=True)
        outs.append(o)
    return torch.cat(outs, 2).transpose(1, 2).nan_to_num(0.0)  # rows with no visible key -> 0
