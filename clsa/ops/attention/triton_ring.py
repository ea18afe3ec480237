"""Decode over a sliding-window ring with the ring write in the same launch (Triton); same
signature as ``naive.ring_attention``.

The kernel is ``triton_decode``'s split-K decode kernel with OWN_ROW: every program treats the
ring row of this step's slot (q_pos[0, 0] mod W) as empty, so none reads it while it is written;
split 0 of each (sequence, K/V head) folds this step's K/V row into its softmax (k rotated as
``ring_write`` rotates it) and stores it, and its position, into the ring. The ring's other rows
were written by earlier steps, so a program whose chunk is one block reads it before it waits for
the launch before (``kv_ready``). README.md has the design and the H200 figures.
"""

from __future__ import annotations

from clsa.ops.attention.triton_decode import (MAX_ROWS, attention, attention_decode, kernel_ok,
                                              needs_grad)
from clsa.ops.cache_write import naive as ring_ref
from clsa.ops.cache_write import triton_write


def ring_attention(q, k, v, k_ring, v_ring, pos_ring, q_pos, kv_start, window: int | None = None,
                   scale: float | None = None, rope=None):
    """``naive.ring_attention`` in one launch. Several queries a row, autograd, non-contiguous
    rings or tensors Triton cannot take: ``ring_write`` then ``attention`` (two launches)."""
    B, Tq, Hq, _ = q.shape
    Hkv = k_ring.shape[2]
    ring_ref.check_shapes(k_ring, k, v, rope)
    if (Tq != 1 or Hq % Hkv or Hq // Hkv > MAX_ROWS or needs_grad(q, k, v)
            or not kernel_ok(q, k, v, k_ring, v_ring, pos_ring, q_pos, kv_start)
            or not (k_ring.is_contiguous() and v_ring.is_contiguous()
                    and pos_ring.is_contiguous())):
        triton_write.ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope)
        return attention(q, k_ring, v_ring, q_pos, pos_ring.expand(B, -1), kv_start, window,
                         scale, rope=rope)
    return attention_decode(q, k_ring, v_ring, q_pos, pos_ring.expand(B, -1), kv_start, window,
                            scale, rope=rope, kv_ready=True, new_kv=(k, v))
