"""Token-sparse GQA attention over a per-query index, plain PyTorch (fp32 math).

Shape legend
    q    [B, Tq, Hq, D]
    k, v [B, S, Hkv, D]       the shared K/V cache (every cross-decoder layer reads the same one)
    idx  [B, Tq, K] int32     selected slots per query, -1 padding; the same index serves every
                              K/V head (token-level selection, as in DSA and CLSA)
    out  [B, Tq, Hq, D]

Each query attends only to the slots in its index row. A row of only -1 returns zeros.
``gather_kv`` is the decode-time half of "gather once, attend many": it copies the selected rows
into a compact buffer that every cross-decoder layer then reads with ``attention`` (k_pos = idx).
"""

from __future__ import annotations

import math

import torch

from clsa.ops.rotary.naive import rotary


def index_mask(idx, num_slots: int):
    """[B, Tq, S] bool from a -1 padded index [B, Tq, K]."""
    B, Tq, _ = idx.shape
    m = torch.zeros(B, Tq, num_slots + 1, dtype=torch.bool, device=idx.device)
    slot = torch.where(idx >= 0, idx.long(), torch.full_like(idx, num_slots, dtype=torch.long))
    m.scatter_(2, slot, True)
    return m[..., :num_slots]


def sparse_attention(q, k, v, idx, scale: float | None = None, query_chunk: int = 256, rope=None,
                     kv_ready: bool = False):
    """Attention of each query over its selected slots only; query-chunked, differentiable.

    ``rope`` = (cos, sin) fp32 [B, Tq, D/2]: rotate q by them first (``rotary.naive.rotary``), as
    ``attention.naive.attention`` does, so kernels may fuse the rotation into their query load.
    ``kv_ready``: the scheduling hint of ``attention.naive.attention``, for k, v and idx."""
    if rope is not None:
        q = rotary(q, *rope)
    B, Tq, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    g = Hq // Hkv
    kf = k.float().repeat_interleave(g, dim=2).transpose(1, 2)  # [B, Hq, S, D]
    vf = v.float().repeat_interleave(g, dim=2).transpose(1, 2)
    outs = []
    for s in range(0, Tq, query_chunk):
        qc = q[:, s:s + query_chunk].float().transpose(1, 2)
        m = index_mask(idx[:, s:s + query_chunk], S)
        logits = torch.einsum("bhcd,bhsd->bhcs", qc, kf) * scale
        logits = logits.masked_fill(~m[:, None], float("-inf"))
        p = torch.softmax(logits, dim=-1).nan_to_num(0.0)
        outs.append(torch.einsum("bhcs,bhsd->bhcd", p, vf).transpose(1, 2))
    return torch.cat(outs, dim=1).to(q.dtype)


def gather_kv(k, v, idx):
    """Copy the selected rows once per decode step.

    k, v [B, S, Hkv, D]; idx [B, K] int32 (-1 padded)  ->  k_sel, v_sel [B, K, Hkv, D]
    Rows for -1 entries hold slot 0's data; readers mask them through k_pos = idx.
    """
    B, K = idx.shape
    safe = idx.clamp_min(0).long()[:, :, None, None].expand(B, K, k.shape[2], k.shape[3])
    return torch.gather(k, 1, safe), torch.gather(v, 1, safe)
