"""RMSNorm with an optional fused residual add, and the SwiGLU gate, plain PyTorch: references.

Shape legend: x, residual [..., C]; weight [C]; gate_up [..., 2F] (gate first, then up).

    rms_norm(x, weight, eps, residual=None) -> (normed, summed)
        summed = x + residual (or x), normed = summed / rms(summed) * weight, in fp32 math;
        returns the sum too so a pre-norm block keeps its residual stream in one pass.
    silu_mul(gate_up) -> silu(gate) * up   [..., F]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps: float, residual=None):
    s = x if residual is None else x + residual
    sf = s.float()
    out = sf * torch.rsqrt(sf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return out.to(x.dtype), s


def silu_mul(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
