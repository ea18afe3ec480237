"""Stock PyTorch: F.rms_norm / the SwiGLU gate, then cuBLAS through F.linear (two launches per
call): the baseline of the fused kernels; same signatures as naive.py."""

from __future__ import annotations

import torch.nn.functional as F

from clsa.ops.norm import naive as norm_naive
from clsa.ops.norm import stock as norm_stock


def linear(x, weight):
    return F.linear(x, weight)


def norm_linear(x, norm_weight, eps: float, weight, residual=None):
    h, summed = norm_stock.rms_norm(x, norm_weight, eps, residual)
    return F.linear(h, weight), summed


def silu_mul_linear(gate_up, weight):
    return F.linear(norm_naive.silu_mul(gate_up), weight)
