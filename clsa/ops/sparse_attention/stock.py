"""Token-sparse attention and the gather with stock PyTorch (SDPA + torch.gather): the baseline.

Same signatures as naive.py. sparse_attention builds the [B, Tq, S] index mask and runs SDPA on it
(fine for decode and short prefill chunks); gather_kv is one torch.gather per tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clsa.ops.rotary.naive import rotary
from clsa.ops.sparse_attention.naive import gather_kv, index_mask


def sparse_attention(q, k, v, idx, scale: float | None = None, query_chunk: int = 1024, rope=None,
                     kv_ready: bool = False):
    if rope is not None:
        q = rotary(q, *rope)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.shape[1] == 1:  # decode: gather the K selected rows, attend densely over them
        ks, vs = gather_kv(k, v, idx[:, 0])
        m = (idx[:, 0] >= 0)[:, None, None, :]
        o = F.scaled_dot_product_attention(qt, ks.transpose(1, 2), vs.transpose(1, 2), attn_mask=m,
                                           scale=scale, enable_gqa=True)
        return o.transpose(1, 2).nan_to_num(0.0)
    outs = []
    for s in range(0, q.shape[1], query_chunk):
        m = index_mask(idx[:, s:s + query_chunk], k.shape[1])[:, None]
        outs.append(F.scaled_dot_product_attention(qt[:, :, s:s + query_chunk], kt, vt, attn_mask=m,
                                                   scale=scale, enable_gqa=True))
    return torch.cat(outs, 2).transpose(1, 2).nan_to_num(0.0)


__all__ = ["gather_kv", "sparse_attention"]
