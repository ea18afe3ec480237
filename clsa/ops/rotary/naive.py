"""Rotary embedding, NeoX (half-split) layout, plain PyTorch in fp32: the reference.

Shape legend
    x         [B, T, H, D] or [B, T, D]   any strides, last dim contiguous
    cos, sin  [B, T, D/2] fp32            tables of the tokens' rotary positions
    out       same shape and dtype as x (contiguous)

Pairs are (i, i + D/2): out_i = x_i cos_i - x_{i+D/2} sin_i, out_{i+D/2} = x_{i+D/2} cos_i + x_i sin_i.
"""

from __future__ import annotations

import torch


def rotary(x, cos, sin):
    if x.dim() == 4:
        cos, sin = cos[:, :, None], sin[:, :, None]
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
