"""Decode-time ring-buffer write of a sliding-window layer, plain PyTorch: the reference.

Shape legend (B sequences sharing one slot counter, W window, Hkv K/V heads, D head dim)
    k_ring, v_ring  [B, W, Hkv, D]   the layer's ring (any float dtype), written in place
    pos_ring        [W] int64        slot held by each ring row (-1 empty), written in place
    k, v            [B, 1, Hkv, D]   the new token's K/V, any float dtype and strides
    q_pos           [B, 1] int       the new token's slot; every row holds the same slot
    rope            (cos, sin) fp32 [B, 1, D/2], or None: the new token's rotary tables

    ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope=None) -> None
        with s = q_pos[0, 0] and r = s mod W:
        k_ring[:, r] = k[:, 0], v_ring[:, r] = v[:, 0] (cast to the ring's dtype), pos_ring[r] = s;
        with rope, k is first rotated (``rotary.naive.rotary``, rounded to k's dtype).
"""

from __future__ import annotations

from clsa.ops.rotary.naive import rotary


def check_shapes(k_ring, k, v, rope=None) -> None:
    """One new token per sequence, shaped like a ring row: [B, 1, Hkv, D] for k and v; rotary
    tables [B, 1, D/2]."""
    B, _, hkv, d = k_ring.shape
    if rope is not None and any(tuple(t.shape) != (B, 1, d // 2) for t in rope):
        raise ValueError(f"ring_write: rope tables must be (cos, sin) of shape [B, 1, D/2] = "
                         f"[{B}, 1, {d // 2}], got {[tuple(t.shape) for t in rope]}")
    for name, x in (("k", k), ("v", v)):
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"ring_write writes one token per sequence ({name} [B, 1, Hkv, D]), got "
                             f"{name} of shape {tuple(x.shape)}; write several tokens with "
                             "RingKV.update's T > 1 path")
        if (x.shape[0], x.shape[2], x.shape[3]) != (B, hkv, d):
            raise ValueError(f"ring_write: {name} of shape {tuple(x.shape)} does not fit a ring of "
                             f"shape {tuple(k_ring.shape)}; expected [{B}, 1, {hkv}, {d}]")


def ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope=None) -> None:
    check_shapes(k_ring, k, v, rope)
    if rope is not None:
        k = rotary(k, *rope)
    ring = q_pos[0].long() % k_ring.shape[1]  # [1], a device tensor: no host sync
    k_ring.index_copy_(1, ring, k.to(k_ring.dtype))
    v_ring.index_copy_(1, ring, v.to(v_ring.dtype))
    pos_ring.index_copy_(0, ring, q_pos[0].long())
