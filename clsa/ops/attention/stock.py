"""Masked GQA attention with stock PyTorch fast paths (SDPA in the input dtype): the baseline.

Same signature and masking rule as naive.py. With no padding, no window and every key row
visible (a dense cache read to its last slot), call sites may pass ``k_pos=None`` to say so; SDPA
then takes its mask-free FlashAttention path, the fastest stock decode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clsa.ops.attention.naive import visible_mask


def attention(q, k, v, q_pos, k_pos, kv_start, window: int | None = None,
              scale: float | None = None, query_chunk: int = 1024):
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
    if k_pos is None:
        return F.scaled_dot_product_attention(qt, kt, vt, scale=scale, enable_gqa=True).transpose(1, 2)
    outs = []
    for s in range(0, q.shape[1], query_chunk):
        m = visible_mask(q_pos[:, s:s + query_chunk], k_pos, kv_start, window)[:, None]
        o = F.scaled_dot_product_attention(qt[:, :, s:s + query_chunk], kt, vt, attn_mask=m,
                                           scale=scale, enable_gqa=True)
        outs.append(o)
    return torch.cat(outs, 2).transpose(1, 2).nan_to_num(0.0)  # rows with no visible key -> 0
