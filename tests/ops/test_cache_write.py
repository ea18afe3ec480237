"""The one-launch ring write equals the reference (interpreter: fp32, fp16 into fp32 rings;
GPU: bf16 and replay in a CUDA graph). A copy has no rounding to budget for: equality is exact."""

import pytest
import torch

from clsa import ops
from clsa.ops.cache_write import naive, triton_write


def rings(B, W, Hkv, D, dtype=torch.float32, device="cpu"):
    """Random ring contents and a scrambled pos, so a write to a wrong row cannot go unseen."""
    k = torch.randn(B, W, Hkv, D, dtype=dtype, device=device)
    v = torch.randn(B, W, Hkv, D, dtype=dtype, device=device)
    pos = torch.randint(-1, 10 * W, (W,), device=device)
    return k, v, pos


def new_token(B, Hkv, D, dtype=torch.float32, device="cpu", Hq=3):
    """k, v [B, 1, Hkv, D] as strided views sliced out of a fused [q | k | v] projection."""
    qkv = torch.randn(B, 1, (Hq + 2 * Hkv) * D, dtype=dtype, device=device)
    k = qkv[..., Hq * D:(Hq + Hkv) * D].view(B, 1, Hkv, D)
    v = qkv[..., (Hq + Hkv) * D:].view(B, 1, Hkv, D)
    return k, v


def check_write(W, B, Hkv, D, dtype, slot, qpos_dtype=torch.int64, k=None, v=None):
    ring = rings(B, W, Hkv, D)
    before = [t.clone() for t in ring]
    if k is None:
        k, v = new_token(B, Hkv, D, dtype)
    q_pos = torch.full((B, 1), slot, dtype=qpos_dtype)
    ref = [t.clone() for t in ring]
    naive.ring_write(*ref, k, v, q_pos)
    triton_write.ring_write(*ring, k, v, q_pos)
    for out, want in zip(ring, ref):
        assert torch.equal(out, want)
    r = slot % W
    assert torch.equal(ring[0][:, r], k[:, 0].float()) and torch.equal(ring[1][:, r], v[:, 0].float())
    assert ring[2][r] == slot
    keep = torch.arange(W) != r  # every other row untouched
    assert torch.equal(ring[0][:, keep], before[0][:, keep])
    assert torch.equal(ring[1][:, keep], before[1][:, keep])
    assert torch.equal(ring[2][keep], before[2][keep])


@pytest.mark.parametrize("W", [1, 5, 64])
@pytest.mark.parametrize("B,Hkv", [(1, 1), (3, 2)])
@pytest.mark.parametrize("D", [8, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ring_write_matches_reference(W, B, Hkv, D, dtype):
    for slot in (min(2, W - 1), W - 1, 7 * W + 3, 100003):  # below W, last row, wrapped twice
        check_write(W, B, Hkv, D, dtype, slot)


def test_ring_write_int32_q_pos_and_strided_head_dim():
    # q_pos as the int32 some callers hold; k, v with a non-unit stride along D (kernel takes any)
    wide = torch.randn(3, 1, 2, 40)
    check_write(5, 3, 2, 20, torch.float32, 12, torch.int32, k=wide[..., ::2], v=wide[..., 1::2])


@pytest.mark.parametrize("D", [8, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ring_write_rotates_the_key_on_its_way_in(D, dtype):
    # rope: the key is rotated (fp32 math, rounded to k's dtype) before the write; v is not
    from clsa.model.layers import rotary_tables
    B, W, Hkv = 3, 5, 2
    ring = rings(B, W, Hkv, D)
    ref = [t.clone() for t in ring]
    k, v = new_token(B, Hkv, D, dtype)
    q_pos = torch.full((B, 1), 13)
    rope = rotary_tables(torch.tensor([[13], [9], [4000]]), D, 10000.0)  # left padding: rows differ
    naive.ring_write(*ref, k, v, q_pos, rope)
    triton_write.ring_write(*ring, k, v, q_pos, rope)
    # fp16: one rounding to k's dtype, where an FMA may land one ulp (2^-10) apart
    tol = 1e-6 if dtype == torch.float32 else 1e-3
    assert torch.allclose(ring[0], ref[0], rtol=tol, atol=tol)
    assert torch.equal(ring[1], ref[1]) and torch.equal(ring[2], ref[2])
    assert not torch.allclose(ring[0][:, 13 % W], k[:, 0].float(), atol=1e-3)  # it was rotated


@pytest.mark.parametrize("fn", [naive.ring_write, triton_write.ring_write])
def test_ring_write_refuses_tables_of_the_wrong_shape(fn):
    from clsa.model.layers import rotary_tables
    ring = rings(2, 5, 2, 8)
    k, v = new_token(2, 2, 8)
    rope = rotary_tables(torch.tensor([[3], [3]]), 16, 10000.0)  # for a 16-dim head
    with pytest.raises(ValueError, match=r"rope tables must be \(cos, sin\) of shape \[B, 1, D/2\]"):
        fn(*ring, k, v, torch.full((2, 1), 3), rope)


def test_ring_write_successive_steps_fill_the_window():
    B, W, Hkv, D = 2, 5, 2, 8
    ring = rings(B, W, Hkv, D)
    ref = [t.clone() for t in ring]
    for slot in range(13):
        k, v = new_token(B, Hkv, D)
        q_pos = torch.full((B, 1), slot)
        naive.ring_write(*ref, k, v, q_pos)
        triton_write.ring_write(*ring, k, v, q_pos)
    assert all(torch.equal(out, want) for out, want in zip(ring, ref))
    assert ring[2].tolist() == [10, 11, 12, 8, 9]


@pytest.mark.parametrize("fn", [naive.ring_write, triton_write.ring_write])
def test_ring_write_refuses_several_tokens(fn):
    ring = rings(2, 5, 2, 8)
    k = torch.randn(2, 3, 2, 8)
    with pytest.raises(ValueError, match="one token per sequence"):
        fn(*ring, k, k, torch.arange(3).expand(2, 3))
    with pytest.raises(ValueError, match="does not fit a ring"):
        fn(*ring, k[:, :1, :1], k[:, :1, :1], torch.zeros(2, 1, dtype=torch.long))


def test_ring_write_autograd_falls_back_to_reference():
    k_ring, v_ring, pos = rings(2, 5, 2, 8)
    k = torch.randn(2, 1, 2, 8, requires_grad=True)
    v = torch.randn(2, 1, 2, 8, requires_grad=True)
    triton_write.ring_write(k_ring, v_ring, pos, k, v, torch.full((2, 1), 6))
    (k_ring.sum() + 2 * v_ring.sum()).backward()
    assert torch.equal(k.grad, torch.ones_like(k)) and torch.equal(v.grad, torch.full_like(v, 2.0))


def test_ring_write_backend_switch_reaches_the_kernel():
    ring = rings(2, 5, 2, 8)
    ref = [t.clone() for t in ring]
    k, v = new_token(2, 2, 8)
    q_pos = torch.full((2, 1), 9)
    naive.ring_write(*ref, k, v, q_pos)
    with ops.use_backend("triton"):
        ops.ring_write(*ring, k, v, q_pos)
    assert all(torch.equal(out, want) for out, want in zip(ring, ref))


@pytest.mark.gpu
@pytest.mark.parametrize("in_dtype", [torch.bfloat16, torch.float32])
def test_gpu_ring_write_bf16_replays_in_cuda_graph(in_dtype):
    # bf16 ring (fp32 inputs are rounded by the kernel as .to(bf16) rounds); captured once at
    # slot 100, replayed at later slots: the kernel reads q_pos from device memory each replay
    B, W, Hkv, D = 4, 1024, 8, 128
    ring = rings(B, W, Hkv, D, torch.bfloat16, "cuda")
    ref = [t.clone() for t in ring]
    k, v = new_token(B, Hkv, D, in_dtype, "cuda", Hq=24)
    q_pos = torch.full((B, 1), 100, device="cuda")
    triton_write.ring_write(*ring, k, v, q_pos)  # compile outside the capture
    naive.ring_write(*ref, k, v, q_pos)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        triton_write.ring_write(*ring, k, v, q_pos)
    for slot in (101, W - 1, 5 * W + 7, 123457):
        q_pos.fill_(slot)
        k.copy_(torch.randn_like(k))
        v.copy_(torch.randn_like(v))
        graph.replay()
        naive.ring_write(*ref, k, v, q_pos)
        torch.cuda.synchronize()
        assert all(torch.equal(out, want) for out, want in zip(ring, ref)), f"slot {slot}"


@pytest.mark.gpu
def test_gpu_ring_write_with_rope_bf16():
    from clsa.model.layers import rotary_tables
    B, W, Hkv, D = 4, 1024, 8, 128
    ring = rings(B, W, Hkv, D, torch.bfloat16, "cuda")
    ref = [t.clone() for t in ring]
    k, v = new_token(B, Hkv, D, torch.bfloat16, "cuda", Hq=24)
    q_pos = torch.full((B, 1), 130000, device="cuda")
    rope = rotary_tables(torch.tensor([[130000], [129000], [7], [65536]], device="cuda"), D, 500000.0)
    triton_write.ring_write(*ring, k, v, q_pos, rope)
    naive.ring_write(*ref, k, v, q_pos, rope)
    r = 130000 % W
    # one bf16 rounding of the same fp32 value, where an FMA may land one ulp (2^-8) apart
    assert torch.allclose(ring[0][:, r].float(), ref[0][:, r].float(), rtol=8e-3, atol=8e-3)
    assert torch.equal(ring[1], ref[1]) and torch.equal(ring[2], ref[2])
