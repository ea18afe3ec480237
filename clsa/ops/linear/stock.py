"""Stock PyTorch: F.rms_norm, then cuBLAS through F.linear (two launches per call): the baseline
of the fused kernels; same signatures as naive.py. ``linear`` and ``silu_mul_linear`` are the
references themselves (F.linear, and the gate as stock PyTorch writes it), as in ``ops/norm``."""

from __future__ import annotations

import torch.nn.functional as F

from clsa.ops.linear.naive import linear, silu_mul_linear
from clsa.ops.norm import stock as norm_stock


def norm_linear(x, norm_weight, eps: float, weight, residual=None):
    h, summed = norm_stock.rms_norm(x, norm_weight, eps, residual)
    return F.linear(h, weight), summed


__all__ = ["linear", "norm_linear", "silu_mul_linear"]
