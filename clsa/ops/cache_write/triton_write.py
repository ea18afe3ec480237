"""Decode-time ring-buffer write in one Triton launch, same signature as naive.ring_write.

Replaces four launches per sliding-window layer (slot = q_pos % W, then ``index_copy_`` of k, of v
and of pos), and with ``rope`` the key's rotary launch as well. Grid (B * Hkv,): one program copies the [D] K row and V row of one head of one
sequence into the ring row of the slot, cast to the ring's dtype; program 0 also writes pos. The
slot is read from q_pos in device memory and reduced mod W in the kernel, so no host sync and no
value-dependent Python int: the launch can be captured in a CUDA graph and replayed as q_pos moves.

k and v may be any strided views (slices of the fused QKV projection output): their strides go to
the kernel, no copy. The rings must be contiguous. Falls back to the reference for autograd, for
non-contiguous rings and for tensors Triton cannot take (CPU without the interpreter); T != 1
or a k/v shape that does not fit the ring raises ValueError (the reference's check).
"""

from __future__ import annotations

import triton
import triton.language as tl

from clsa.ops.attention.triton_decode import kernel_ok, needs_grad, pdl_enter, use_pdl
from clsa.ops.cache_write import naive


@triton.jit
def _ring_write_kernel(kr_ptr, vr_ptr, pr_ptr, k_ptr, v_ptr, qp_ptr, cos, sin,
                       s_kb, s_kh, s_kd, s_vb, s_vh, s_vd, s_cb, W,
                       HKV: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, ROPE: tl.constexpr,
                       PDL: tl.constexpr):
    pdl_enter(PDL)  # k, v: this step's rotated row, from the launches before
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // HKV, i_bh % HKV
    b_s = tl.load(qp_ptr).to(tl.int64)  # q_pos[0, 0]: the batch's shared slot
    b_r = (b_s % W + W) % W  # floor mod (as torch's %) whatever the sign convention of the backend
    o_d = tl.arange(0, BD).to(tl.int64)
    m_d = o_d < D
    p_k = k_ptr + i_b * s_kb + i_h * s_kh + o_d * s_kd
    b_k = tl.load(p_k, mask=m_d)  # [BD]
    if ROPE:  # rotate the key on its way into the ring (rotary.naive's math, fp32)
        o_f = tl.where(o_d < D // 2, o_d, o_d - D // 2)
        b_p = tl.load(p_k + tl.where(o_d < D // 2, D // 2, -(D // 2)) * s_kd, mask=m_d).to(tl.float32)
        b_p = tl.where(o_d < D // 2, -b_p, b_p)
        b_c = tl.load(cos + i_b * s_cb + o_f, mask=m_d)
        b_k = (b_k.to(tl.float32) * b_c + b_p * tl.load(sin + i_b * s_cb + o_f, mask=m_d)).to(b_k.dtype)
    b_v = tl.load(v_ptr + i_b * s_vb + i_h * s_vh + o_d * s_vd, mask=m_d)  # [BD]
    o_ring = ((i_b * W + b_r) * HKV + i_h) * D + o_d  # contiguous [B, W, HKV, D]
    tl.store(kr_ptr + o_ring, b_k.to(kr_ptr.dtype.element_ty), mask=m_d)
    tl.store(vr_ptr + o_ring, b_v.to(vr_ptr.dtype.element_ty), mask=m_d)
    if i_bh == 0:
        tl.store(pr_ptr + b_r, b_s)


def ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope=None) -> None:
    naive.check_shapes(k_ring, k, v, rope)
    if (needs_grad(k, v) or not kernel_ok(k_ring, v_ring, pos_ring, k, v, q_pos)
            or not (k_ring.is_contiguous() and v_ring.is_contiguous() and pos_ring.is_contiguous())):
        return naive.ring_write(k_ring, v_ring, pos_ring, k, v, q_pos, rope)
    B, W, HKV, D = k_ring.shape
    cos, sin = (k, k) if rope is None else (rope[0].float().contiguous(), rope[1].float().contiguous())
    _ring_write_kernel[(B * HKV,)](k_ring, v_ring, pos_ring, k, v, q_pos, cos, sin,
                                   k.stride(0), k.stride(2), k.stride(3),
                                   v.stride(0), v.stride(2), v.stride(3), cos.stride(0), W,
                                   HKV=HKV, D=D, BD=triton.next_power_of_2(D), ROPE=rope is not None,
                                   PDL=use_pdl(), num_warps=1, launch_pdl=use_pdl())
