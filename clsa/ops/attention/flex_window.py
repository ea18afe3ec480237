"""Sliding-window prefill with FlexAttention: one call per layer and prompt chunk over the band.

Layout as in naive.py (q [B, T, Hq, D]; k, v [B, W + T, Hkv, D]; q_pos [B, T]; k_pos [B, W + T];
kv_start [B]), for the key layout ``RingKV.update`` returns during prefill and ``stock.ring_prefix``
recognises: W older slots (the ring, in any order), then the T queries' own slots, the queries at
contiguous positions. Masking rule and zero rows as in naive.py.

Why: masked SDPA over 1024-query pieces computes every tile of its key slice, half of it masked,
and costs a mask build and several launches per piece. Here the work is cut at 128 x 128 blocks:
a query block attends to the ring only while it is within ``window`` of the chunk start, and to
its own slots only along the band. The block list depends on (T, W, window) alone, so it is built
once and shared by every layer and every chunk of that shape; the exact per-element rule (padding,
empty or stale ring rows, the window) is the mask function, read from k_pos/q_pos/kv_start.

    out = window_prefill(q, k, v, q_pos, k_pos, kv_start, window, scale)

On CUDA the call is compiled (``torch.compile(flex_attention)``: the first chunk length compiles
for some seconds, a second one once more, as dynamic). On CPU it runs FlexAttention's eager path,
for tests only.
"""

from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

BLOCK = 128


def supported(q) -> bool:
    """Compiled FlexAttention needs head dim >= 16 (a tensor-core tile); stock SDPA takes the rest."""
    return q.shape[-1] >= 16


@functools.cache
def _compiled():
    return torch.compile(flex_attention)  # static first, dynamic from the second chunk length on


@functools.lru_cache(maxsize=16)
def band_blocks(T: int, W: int, window: int, device: torch.device, block: int = BLOCK):
    """(kv_num_blocks [1, 1, nQ], kv_indices [1, 1, nQ, nKV]) int32: the key blocks any query of
    each query block may see. Query i sits at kv index W + i; it may see ring rows while
    i < window - 1 (a ring row is older than the chunk), and its own slots W + i - window + 1 ..
    W + i. A superset of the exact mask, block by block."""
    nq, nk = -(-T // block), -(-(W + T) // block)
    q_lo = torch.arange(nq, device=device) * block  # first and last query of each block
    q_hi = torch.clamp(q_lo + block - 1, max=T - 1)
    k_lo = torch.arange(nk, device=device) * block
    k_hi = torch.clamp(k_lo + block - 1, max=W + T - 1)
    ring = (k_lo[None, :] < W) & (q_lo[:, None] < window - 1)
    band = (k_hi[None, :] >= W + q_lo[:, None] - window + 1) & (k_lo[None, :] <= W + q_hi[:, None])
    band &= k_hi[None, :] >= W
    hit = ring | band  # [nQ, nKV]
    num = hit.sum(-1, dtype=torch.int32)
    order = torch.argsort((~hit).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return num[None, None].contiguous(), order[None, None].contiguous()


def window_prefill(q, k, v, q_pos, k_pos, kv_start, window: int, scale: float | None = None):
    """Masked sliding-window GQA attention for the ring layout; naive.attention's result."""
    B, T, Hq, D = q.shape
    S = k.shape[1]
    W = S - T
    if W < 0 or window < 1 or tuple(k_pos.shape) != (B, S) or tuple(q_pos.shape) != (B, T):
        raise ValueError(f"window_prefill needs k [B, W + T] after q [B, T] and window >= 1; got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, k_pos {tuple(k_pos.shape)}, "
                         f"window {window}")
    num, idx = band_blocks(T, W, window, q.device)
    # mask lookups stay in range for the padded last block: pad the tables to whole blocks
    kp = torch.nn.functional.pad(k_pos.long(), (0, -(-S // BLOCK) * BLOCK - S), value=-1)
    qp = torch.nn.functional.pad(q_pos.long(), (0, -(-T // BLOCK) * BLOCK - T), value=-1)
    start = kv_start.long()

    def visible(b, h, qi, ki):
        kpos, qpos = kp[b, ki], qp[b, qi]
        return (kpos >= start[b]) & (kpos >= 0) & (kpos <= qpos) & (kpos > qpos - window)

    # forward only: the query-major block lists (for a backward pass) are not built
    mask = BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=BLOCK, mask_mod=visible, seq_lengths=(T, S),
                                    compute_q_blocks=False)
    run = _compiled() if q.is_cuda else flex_attention
    o = run(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask, scale=scale,
            enable_gqa=True)
    return o.transpose(1, 2)  # a query that sees no key gets 0 from FlexAttention itself
