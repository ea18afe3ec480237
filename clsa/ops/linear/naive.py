"""Decode-time projections with their input prologue fused in, plain PyTorch: the references.

Shape legend
    x         [..., K]        input rows (M = x.numel() // K rows)
    weight    [N, K]          an ``nn.Linear`` weight (out_features x in_features)
    residual  [..., K]        optional; added to x before the norm
    gate_up   [..., 2K]       fused SwiGLU projection output, gate first, then up
    out       [..., N]        in x's dtype

    linear(x, weight)                               = x @ weight^T
    norm_linear(x, norm_weight, eps, weight, residual=None)
        -> (rms_norm(x + residual) @ weight^T, x + residual)
    silu_mul_linear(gate_up, weight)                = (silu(gate) * up) @ weight^T

The norm and the gate are computed exactly as ``clsa.ops.norm``'s references (fp32 math, rounded
to the input dtype), the product as ``F.linear`` in the input dtype. At decode a pre-norm block
is norm -> projection, SwiGLU is gate -> projection: fusing the elementwise pass into the
projection's load removes one launch per pair (README.md).
"""

from __future__ import annotations

import torch.nn.functional as F

from clsa.ops.norm import naive as norm


def linear(x, weight):
    return F.linear(x, weight)


def norm_linear(x, norm_weight, eps: float, weight, residual=None):
    h, summed = norm.rms_norm(x, norm_weight, eps, residual)
    return F.linear(h, weight), summed


def silu_mul_linear(gate_up, weight):
    return F.linear(norm.silu_mul(gate_up), weight)
