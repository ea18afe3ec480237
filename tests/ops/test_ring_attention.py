"""The ring write fused into decode attention (``ring_attention``) vs the reference, which writes
the row first (``ring_write``) and then attends over the ring.

CPU: the Triton interpreter in fp32 on small awkward rings: not yet full, wrapped, a row whose slot
already holds this position (a step re-run), stale rows past the query (a re-run at an earlier
position), left padding, a window shorter than the ring, forced splits. Every case checks the
output and the ring left behind (K, V, positions). GPU (``-m gpu``): bf16 at the yoco-3b ring.
"""

import pytest
import torch

from clsa import ops
from clsa.ops.attention import naive
from clsa.ops.attention import triton_decode as td
from clsa.ops.attention import triton_ring
from clsa.testing import assert_close
from tests.ops.test_attention_decode import rope_tables
from tests.ops.test_cache_write import new_token


def ring_case(B, W, Hkv, D, pos, dtype=torch.float32, device="cpu", stale=()):
    """A ring that has seen slots [0, pos) (-1 where it never held one), the query at ``pos``; the
    slots in ``stale`` (> pos) are written over the rows they map to, as a re-run leaves them."""
    k = torch.randn(B, W, Hkv, D, dtype=dtype, device=device)
    v = torch.randn(B, W, Hkv, D, dtype=dtype, device=device)
    ring_pos = torch.full((W,), -1, dtype=torch.long, device=device)
    for s in list(range(max(0, pos - W), pos)) + list(stale):
        ring_pos[s % W] = s
    return k, v, ring_pos


def run_both(fn, q, k_new, v_new, ring, q_pos, kv_start, window, rope):
    """(out, ring after) of ``fn`` and of the reference, each on its own copy of the ring."""
    mine = [t.clone() for t in ring]
    ref = [t.clone() for t in ring]
    out = fn(q, k_new, v_new, *mine, q_pos, kv_start, window, None, rope=rope)
    want = naive.ring_attention(q, k_new, v_new, *ref, q_pos, kv_start, window, None, rope=rope)
    return out, mine, want, ref


def assert_same(out, mine, want, ref):
    assert_close(out, want)
    assert_close(mine[0], ref[0])
    assert_close(mine[1], ref[1])
    assert torch.equal(mine[2], ref[2])


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("D", [20, 64])  # 20: the tile is wider than the head (masked columns)
@pytest.mark.parametrize("W, pos, stale", [
    (16, 3, ()),        # the ring not yet full
    (16, 40, ()),       # wrapped
    (7, 20, (23, 25)),  # wrapped, with rows of slots past the query (a re-run at an earlier step)
    (7, 20, (20,)),     # this slot already written once (the same step run again)
    (16, 0, ()),        # the first token: the ring holds nothing yet
])
def test_fused_ring_write_and_attention_equal_the_reference(W, pos, stale, D, window):
    B, Hq, Hkv = 3, 6, 2
    ring = ring_case(B, W, Hkv, D, pos, stale=stale)
    q = torch.randn(B, 1, Hq, D)
    k_new, v_new = new_token(B, Hkv, D, Hq=Hq)
    q_pos = torch.full((B, 1), pos)
    kv_start = torch.tensor([0, min(2, pos), pos + 1])  # row 2 sees nothing at all: zeros
    rope = rope_tables(B, 1, D)
    out, mine, want, ref = run_both(triton_ring.ring_attention, q, k_new, v_new, ring, q_pos, kv_start,
                                    window, rope)
    assert_same(out, mine, want, ref)
    assert (out[2] == 0).all()


@pytest.mark.parametrize("preload", [False, True])
def test_fused_ring_write_under_forced_splits(preload):
    # 40 ring rows in chunks of 16 (3 splits, 2 blocks of 8 each): only split 0 folds the new row
    # in and writes it, whichever chunk holds its slot; the early first block on and off
    B, W, Hq, Hkv, D, pos = 2, 40, 4, 2, 16, 97
    ring = ring_case(B, W, Hkv, D, pos)
    q = torch.randn(B, 1, Hq, D)
    k_new, v_new = new_token(B, Hkv, D, Hq=Hq)
    q_pos, kv_start = torch.full((B, 1), pos), torch.tensor([70, 0])
    rope = rope_tables(B, 1, D)

    def fused(q, k, v, k_ring, v_ring, pos_ring, q_pos, kv_start, window, scale, rope):
        return td.attention_decode(q, k_ring, v_ring, q_pos, pos_ring.expand(B, -1), kv_start,
                                   window, scale, block_s=8, chunk=16, rope=rope, preload=preload,
                                   new_kv=(k, v))

    assert_same(*run_both(fused, q, k_new, v_new, ring, q_pos, kv_start, 9, rope))


def test_ring_attention_falls_back_and_backends_agree():
    B, W, Hq, Hkv, D, pos = 2, 8, 4, 2, 16, 11
    ring = ring_case(B, W, Hkv, D, pos)
    q = torch.randn(B, 1, Hq, D)
    k_new, v_new = new_token(B, Hkv, D, Hq=Hq)
    q_pos, kv_start = torch.full((B, 1), pos), torch.zeros(B, dtype=torch.long)
    rope = rope_tables(B, 1, D)
    for backend in ("torch", "triton"):
        with ops.use_backend(backend):
            assert_same(*run_both(ops.ring_attention, q, k_new, v_new, ring, q_pos, kv_start, 4,
                                  rope))
    # autograd takes the write-then-attend path, with the same result
    qg = q.clone().requires_grad_()
    assert_same(*run_both(triton_ring.ring_attention, qg, k_new, v_new, ring, q_pos, kv_start, 4, rope))


def test_ring_attention_refuses_a_row_that_does_not_fit():
    k_ring, v_ring, pos_ring = ring_case(2, 8, 2, 16, 3)
    q = torch.randn(2, 1, 4, 16)
    k_new, v_new = new_token(2, 3, 16, Hq=4)  # 3 heads for a ring of 2
    with pytest.raises(ValueError, match="does not fit a ring"):
        triton_ring.ring_attention(q, k_new, v_new, k_ring, v_ring, pos_ring, torch.full((2, 1), 3),
                          torch.zeros(2, dtype=torch.long))


@pytest.mark.gpu
@pytest.mark.parametrize("B", [1, 8])
def test_gpu_bf16_ring_attention_yoco_3b(B):
    # the yoco-3b self-decoder ring (W = 1024, 24 heads on 8) in bf16, wrapped, against the
    # write-then-attend path on the same bf16 tensors (the reference's fp32 math)
    dev, bf = "cuda", torch.bfloat16
    W, Hq, Hkv, D, pos = 1024, 24, 8, 128, 5000
    ring = ring_case(B, W, Hkv, D, pos, dtype=bf, device=dev)
    q = torch.randn(B, 1, Hq, D, dtype=bf, device=dev)
    k_new, v_new = new_token(B, Hkv, D, dtype=bf, device=dev, Hq=Hq)
    q_pos = torch.full((B, 1), pos, device=dev)
    kv_start = torch.zeros(B, dtype=torch.long, device=dev)
    rope = rope_tables(B, 1, D, device=dev)
    out, mine, want, ref = run_both(triton_ring.ring_attention, q, k_new, v_new, ring, q_pos, kv_start,
                                    W, rope)
    assert torch.equal(mine[2], ref[2])
    assert torch.equal(mine[1], ref[1])
    assert (mine[0].float() - ref[0].float()).abs().max() <= 2 ** -7 * ref[0].float().abs().max()
    err = (out.float() - want.float()).pow(2).mean().sqrt()
    assert err <= 2e-2 * want.float().pow(2).mean().sqrt()
