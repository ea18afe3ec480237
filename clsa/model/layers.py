"""Building blocks shared by every variant: RMSNorm, SwiGLU, rotary embedding (NeoX layout).

Shape legend: x [B, T, C]; q/k [B, T, H, D]; positions [B, T] int (rotary position of each token,
which differs from its cache slot under left padding).
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, residual=None):
        """normed(x + residual); with a residual, returns (normed, x + residual): one fused pass."""
        from clsa import ops

        out, summed = ops.rms_norm(x, self.weight, self.eps, residual)
        return out if residual is None else (out, summed)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); gate and up are one fused projection (one GEMV at decode)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up_proj = nn.Linear(dim, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        from clsa import ops

        return self.down_proj(ops.silu_mul(self.gate_up_proj(x)))


_INV_FREQ: dict[tuple, torch.Tensor] = {}  # (half, theta, device) -> [half] fp32


def inverse_frequencies(half: int, theta: float, device) -> torch.Tensor:
    """theta^(-i / half) for i < half, fp32; made once per device (four launches fewer a decode step)."""
    key = (half, float(theta), torch.device(device))
    inv = _INV_FREQ.get(key)
    if inv is None:
        inv = theta ** (-torch.arange(0, half, device=device, dtype=torch.float32) / half)
        # made inside a CUDA-graph capture, it would hold values only once the graph replays
        if not (inv.is_cuda and torch.cuda.is_current_stream_capturing()):
            _INV_FREQ[key] = inv
    return inv


def rotary_tables(positions, dim: int, theta: float):
    """(cos, sin) [B, T, dim/2] fp32 for ``positions``: computed once per forward, used by all layers."""
    ang = positions.float()[..., None] * inverse_frequencies(dim // 2, theta, positions.device)
    return ang.cos(), ang.sin()


def apply_rotary(x, tables):
    """Rotate x [B, T, H, D] or [B, T, D] with precomputed tables (NeoX half-split layout)."""
    from clsa import ops  # deferred: clsa.ops imports nothing from the model

    return ops.rotary(x, *tables)


class Rope:
    """Rotary tables of one forward, computed once per head size and shared by every layer.

    Layers accept a Rope or a plain positions tensor [B, T] (wrapped on the fly)."""

    def __init__(self, positions, theta: float):
        self.positions, self.theta, self._tables = positions, theta, {}

    @staticmethod
    def of(arg, theta: float) -> "Rope":
        return arg if isinstance(arg, Rope) else Rope(arg, theta)

    def tables(self, dim: int):
        if dim not in self._tables:
            self._tables[dim] = rotary_tables(self.positions, dim, self.theta)
        return self._tables[dim]

    def __call__(self, x):
        return apply_rotary(x, self.tables(x.shape[-1]))

    def slice(self, cols: slice) -> "Rope":
        """The Rope of tokens ``cols``; tables already made are sliced, not recomputed (at decode
        the cross-decoder reuses the self-decoder's: four launches fewer a step)."""
        out = Rope(self.positions[:, cols], self.theta)
        out._tables = {d: (c[:, cols], s[:, cols]) for d, (c, s) in self._tables.items()}
        return out


def rotary(x, positions, theta: float):
    """Rotary embedding in the NeoX (non-interleaved) layout.

    The feature pairs are (i, i + D/2), not (2i, 2i + 1): dimension i of the first half rotates
    with dimension i of the second half at frequency theta^(-2i/D). x [B, T, H, D] or [B, T, D].
    Computed in fp32 and cast back, so cached keys and recomputed keys agree bit for bit.
    """
    return apply_rotary(x, rotary_tables(positions, x.shape[-1], theta))
