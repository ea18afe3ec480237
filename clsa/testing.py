"""The one tolerance rule for kernel tests, scale-free (never tuned per test).

``assert_close(out, ref, low_precision=None)``:
  * with ``low_precision`` (the same computation done by PyTorch in the kernel's dtype), the kernel's
    error against the fp32 reference must be at most 2x PyTorch's own error plus a tiny floor
    (the flash-attention rule);
  * without it, the relative RMS error must be below 1e-4 (fp32 kernels vs fp32 references).
"""

from __future__ import annotations

import torch


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS of (a - b) divided by RMS of b (0 when both are zero)."""
    a, b = a.double(), b.double()
    num = (a - b).pow(2).mean().sqrt().item()
    den = b.pow(2).mean().sqrt().item()
    return num / den if den > 0 else num


def assert_close(out: torch.Tensor, ref: torch.Tensor, low_precision: torch.Tensor | None = None,
                 fp32_tol: float = 1e-4) -> None:
    if out.shape != ref.shape:
        raise AssertionError(f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError("output holds NaN/inf (an element left unwritten?)")
    err = rel_rms(out, ref)
    if low_precision is None:
        assert err <= fp32_tol, f"relative RMS error {err:.3e} > {fp32_tol:.0e}"
    else:
        base = rel_rms(low_precision, ref)
        assert err <= 2 * base + 1e-6, f"error {err:.3e} > 2 x PyTorch's {base:.3e}"


def lowp_attention(q, k, v, mask, scale: float):
    """Masked GQA attention the way PyTorch does it in the inputs' dtype (matmuls in bf16, softmax
    in fp32 then rounded): the error budget of the 2x rule for attention kernels.
    q [B, T, Hq, D]; k, v [B, S, Hkv, D]; mask [B, T, S] bool; returns [B, T, Hq, D]."""
    G = q.shape[2] // k.shape[2]
    kt = k.repeat_interleave(G, dim=2).transpose(1, 2)
    vt = v.repeat_interleave(G, dim=2).transpose(1, 2)
    s = torch.einsum("bhcd,bhsd->bhcs", q.transpose(1, 2), kt) * scale
    s = s.float().masked_fill(~mask[:, None], float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0).to(q.dtype)
    return torch.einsum("bhcs,bhsd->bhcd", p, vt).transpose(1, 2)
