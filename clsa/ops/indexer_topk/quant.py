"""8-bit indexer keys: symmetric absmax quantization with one fp32 scale per slot.

Shape legend
    k        [..., Di]         keys in any float dtype (the cache passes [B, T, Di])
    k_q      [..., Di] int8    round(k / k_scale), in [-127, 127]
    k_scale  [...] fp32        max |k| / 127 over the slot's Di entries; 1 for an all-zero slot

The effective key of a slot is ``k_q.float() * k_scale``; every element is within k_scale / 2 of
the original (rounding to the nearest step). The math is in README.md.
"""

from __future__ import annotations

import torch


def quantize_keys(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_q int8 [..., Di], k_scale fp32 [...]) with k ~= k_q * k_scale[..., None]."""
    kf = k.float()
    amax = kf.abs().amax(-1)
    # an all-zero slot gets scale 1 (not 0): k / scale stays finite and dequantizes to exact zeros
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    k_q = torch.round(kf / scale[..., None]).clamp_(-127, 127).to(torch.int8)
    return k_q, scale


def dequantize_keys(k_q: torch.Tensor, k_scale: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The effective keys k_q * k_scale [..., Di], computed in fp32 and returned in ``dtype``."""
    return (k_q.float() * k_scale.float()[..., None]).to(dtype)
