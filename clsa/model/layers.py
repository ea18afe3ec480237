"""Building blocks shared by every variant: RMSNorm, SwiGLU, rotary embedding (NeoX layout).

Shape legend: x [B, T, C]; q/k [B, T, H, D]; positions [B, T] int (rotary position of each token,
which differs from its cache slot under left padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotary(x, positions, theta: float):
    """Rotary embedding in the NeoX (non-interleaved) layout.

    The feature pairs are (i, i + D/2), not (2i, 2i + 1): dimension i of the first half rotates
    with dimension i of the second half at frequency theta^(-2i/D). x [B, T, H, D] or [B, T, D].
    Computed in fp32 and cast back, so cached keys and recomputed keys agree bit for bit.
    """
    d = x.shape[-1]
    half = d // 2
    inv = theta ** (-torch.arange(0, half, device=x.device, dtype=torch.float32) / half)
    ang = positions.float()[..., None] * inv  # [B, T, half]
    if x.dim() == 4:
        ang = ang[:, :, None, :]
    cos, sin = ang.cos(), ang.sin()
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
