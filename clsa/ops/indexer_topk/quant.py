"""8-bit indexer keys: symmetric absmax quantization with one fp32 scale per slot.

Shape legend
    k        [..., Di]         keys in any float dtype (the cache passes [B, T, Di])
    k_q      [..., Di] int8    round(k / k_scale), in [-127, 127]
    k_scale  [...] fp32        max |k| / 127 over the slot's Di entries; 1 for an all-zero slot

The effective key of a slot is ``k_q.float() * k_scale``; every element is within k_scale / 2 of
the original (rounding to the nearest step). A 16-bit query meets 8-bit keys on the int8 tensor
cores as two int8 parts (``split_query``: q ~= s1 * (hi + lo / 254), within s1 / 508). The math
is in README.md.
"""

from __future__ import annotations

import torch


def _absmax_scale(x: torch.Tensor) -> torch.Tensor:
    """max |x| / 127 over the last dim, fp32 [...]. An all-zero vector gets 1 (not 0): x / scale
    stays finite and comes back as exact zeros."""
    amax = x.abs().amax(-1)
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))


def quantize_keys(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_q int8 [..., Di], k_scale fp32 [...]) with k ~= k_q * k_scale[..., None]."""
    kf = k.float()
    scale = _absmax_scale(kf)
    k_q = torch.round(kf / scale[..., None]).clamp_(-127, 127).to(torch.int8)
    return k_q, scale


def dequantize_keys(k_q: torch.Tensor, k_scale: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The effective keys k_q * k_scale [..., Di], computed in fp32 and returned in ``dtype``."""
    return (k_q.float() * k_scale.float()[..., None]).to(dtype)


def split_query(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The query's two int8 parts, as the kernel takes them for 8-bit keys with a 16-bit query:
    (hi, lo int8 [..., Di], s1 fp32 [...]) with q ~= s1 * (hi + lo / 254), s1 = max |q| / 127
    (1 for an all-zero vector), so every entry is within s1 / 508 of the original. Rounding is
    floor(x + 0.5), as in the kernel."""
    qf = q.float()
    s1 = _absmax_scale(qf)
    x = qf / s1[..., None]
    hi = torch.floor(x + 0.5).clamp_(-127, 127)
    lo = torch.floor((x - hi) * 254.0 + 0.5).clamp_(-127, 127)
    return hi.to(torch.int8), lo.to(torch.int8), s1


def join_query(hi: torch.Tensor, lo: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """The effective query s1 * (hi + lo / 254) [..., Di] fp32 of ``split_query``'s parts."""
    return s1[..., None] * (hi.float() + lo.float() / 254.0)
