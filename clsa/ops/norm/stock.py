"""Stock PyTorch RMSNorm (F.rms_norm) and SwiGLU gate: the baseline; same signatures as naive.py."""

from __future__ import annotations

import torch.nn.functional as F

from clsa.ops.norm.naive import silu_mul


def rms_norm(x, weight, eps: float, residual=None):
    s = x if residual is None else x + residual
    return F.rms_norm(s, (s.shape[-1],), weight.to(s.dtype), eps), s


__all__ = ["rms_norm", "silu_mul"]
