"""Split-K decode attention (Triton) vs the PyTorch reference.

CPU: the Triton interpreter in fp32 on small awkward shapes (tolerance: clsa.testing, 1e-4 RMS).
GPU (``-m gpu``): bf16 at the yoco-3b head shape, the 2x-of-PyTorch rule, CUDA-graph capture.
"""

import math

import pytest
import torch

from clsa.ops.attention import naive
from clsa.ops.attention import triton_decode as td
from clsa.ops.rotary import naive as rotary_naive
from clsa.testing import assert_close, lowp_attention

SHAPES = [(4, 2), (3, 1), (2, 2)]  # (Hq, Hkv)


def make_qkv(B, Tq, S, Hq, Hkv, D, dtype=torch.float32, device="cpu"):
    q = torch.randn(B, Tq, Hq, D, dtype=dtype, device=device)
    k = torch.randn(B, S, Hkv, D, dtype=dtype, device=device)
    v = torch.randn(B, S, Hkv, D, dtype=dtype, device=device)
    return q, k, v


def mixed_positions(S):
    """Three rows: mid-sequence with left padding, the last slot, and a query before kv_start
    (sees nothing -> zeros)."""
    q_pos = torch.tensor([[S // 2], [S - 1], [0]])
    kv_start = torch.tensor([min(3, S // 2), 0, 1])
    k_pos = torch.arange(S).expand(3, S).contiguous()
    return q_pos, k_pos, kv_start


@pytest.mark.parametrize("window", [None, 16])
@pytest.mark.parametrize("D", [16, 64])
@pytest.mark.parametrize("Hq,Hkv", SHAPES)
@pytest.mark.parametrize("S", [1, 63, 200])
def test_dense_decode_matches_reference(S, Hq, Hkv, D, window):
    q, k, v = make_qkv(3, 1, S, Hq, Hkv, D)
    q_pos, k_pos, kv_start = mixed_positions(S)
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, window)
    ref = naive.attention(q, k, v, q_pos, k_pos, kv_start, window)
    assert_close(out, ref)
    assert (out[2] == 0).all()  # q_pos < kv_start: no visible key


@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("Hq,Hkv", SHAPES)
def test_ring_buffer_k_pos(Hq, Hkv, window):
    """Sliding-window ring: entries hold shuffled slots, some empty (-1), not monotonic."""
    B, R, D = 2, 24, 16
    q, k, v = make_qkv(B, 1, R, Hq, Hkv, D)
    q_pos = torch.tensor([[40], [9]])  # row 1 has written only slots 0..9
    k_pos = torch.full((B, R), -1, dtype=torch.int32)
    for b in range(B):
        p = int(q_pos[b, 0])
        slots = torch.arange(max(0, p - R + 1), p + 1, dtype=torch.int32)
        k_pos[b, slots.long() % R] = slots
    k_pos = k_pos[:, torch.randperm(R)].contiguous()  # any order must do
    kv_start = torch.tensor([2, 0])
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, window)
    assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, window))


@pytest.mark.parametrize("preload", [False, True])
@pytest.mark.parametrize("skip_empty", [True, False])
@pytest.mark.parametrize("chunk", [128, 96, 4096])
def test_many_blocks_per_split_and_garbage_rows(skip_empty, chunk, preload):
    """chunk = 4 blocks of 32 per split (3 blocks: the k_pos scan of a chunk that is no power of 2
    of blocks; 4096: one long chunk, scanned block by block); rows past the live length hold NaN
    and k_pos = -1: they are never read (the reference sees finite data there), so the output
    stays finite and equal. ``preload`` folds the span's first block in before the query is
    read (splits with an empty span included)."""
    B, S, Hq, Hkv, D = 2, 200, 4, 2, 16
    q, k, v = make_qkv(B, 1, S, Hq, Hkv, D)
    live = torch.tensor([70, 181])
    k_pos = torch.arange(S).expand(B, S).clone()
    k_pos[k_pos >= live[:, None]] = -1
    q_pos = (live - 1)[:, None]
    kv_start = torch.tensor([5, 0])
    ref = naive.attention(q, k, v, q_pos, k_pos, kv_start, None)
    kg, vg = k.clone(), v.clone()
    kg[k_pos < 0] = float("nan")
    vg[k_pos < 0] = float("nan")
    out = td.attention_decode(q, kg, vg, q_pos, k_pos, kv_start, None, block_s=32, chunk=chunk,
                              skip_empty=skip_empty, preload=preload)
    assert_close(out, ref)


def counters_clean(device="cpu"):
    """The split kernels' ticket counters are all zero between launches (self-cleaning)."""
    return not td.split_counters(1, torch.device(device)).any()


def split_case(S=100, B=2):
    """Tq = 3 queries of G = 2 heads (M = 6 rows). Row 0: query 0 sees slots 3..10 only (one
    split), query 1 slots 3..50, query 2 (q_pos < kv_start) nothing at all. Row 1: slots 32..47
    are empty (k_pos = -1), so that split sees no key for any query."""
    q, k, v = make_qkv(B, 3, S, 4, 2, 16)
    q_pos = torch.tensor([[10, 50, 0], [S - 1, 20, 40]])[:B]
    k_pos = torch.arange(S).expand(B, S).clone()
    k_pos[1:, 32:48] = -1
    kv_start = torch.tensor([3, 0])[:B]
    return q, k, v, q_pos, k_pos, kv_start


@pytest.mark.parametrize("window", [None, 12])
def test_in_kernel_merge_many_splits(window):
    """16-slot chunks: NS = 7 splits merged by the group's last program, with rows that see keys
    in some splits only and rows that see none at all (exactly 0)."""
    q, k, v, q_pos, k_pos, kv_start = split_case()
    out = td.attention_decode(q, k, v, q_pos, k_pos, kv_start, window, block_s=16, chunk=16)
    assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, window))
    assert (out[0, 2] == 0).all()
    assert counters_clean()


def test_single_split_writes_out_directly(monkeypatch):
    """NS == 1: no partials, no ticket (split_counters must not be reached)."""
    def no_counters(*args):
        raise AssertionError("NS == 1 took a ticket")
    monkeypatch.setattr(td, "split_counters", no_counters)
    q, k, v, q_pos, k_pos, kv_start = split_case()
    for window in (None, 12):
        out = td.attention_decode(q, k, v, q_pos, k_pos, kv_start, window, block_s=16, chunk=112)
        assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, window))
        assert (out[0, 2] == 0).all()


@pytest.mark.parametrize("span, B, want", [
    # the 2048-slot compact buffer (32 blocks of 64) and the 1024-slot ring, 8 KV heads, 132 SMs
    (2048, 1, 16), (2048, 2, 16), (2048, 4, 8), (2048, 8, 8), (2048, 16, 4), (2048, 33, 2),
    (2048, 34, 1), (2048, 118, 1),
    (1024, 1, 16), (1024, 4, 8), (1024, 8, 8),
])
def test_short_span_split_plan(monkeypatch, span, B, want):
    # short spans: up to 16 splits within two programs per SM, up to 8 within four (the H100 and
    # H200 probes' best at B = 1, 4 and 8); every slot lands in exactly one split
    monkeypatch.setattr(td, "_num_sms", lambda device: 132)
    chunk, ns = td.split_plan(8 * B, span, 64, torch.device("cpu"))
    assert ns == want and chunk % 64 == 0 and (ns - 1) * chunk < span <= ns * chunk


@pytest.mark.parametrize("span, B, want", [
    # (block, warps, chunk, NS) on 132 SMs, 8 KV heads: wide blocks while the grid stays within
    # two programs per SM (B <= 4 at the yoco-3b shape), the default tiles beyond
    (2048, 1, (128, 8, 128, 16)), (2048, 4, (128, 8, 256, 8)), (2048, 8, (64, 4, 256, 8)),
    (1024, 1, (64, 8, 64, 16)), (1024, 4, (128, 8, 128, 8)), (1024, 8, (64, 4, 128, 8)),
    (3072, 1, (64, 4, 192, 16)),  # 192-slot chunks are no whole number of 128-slot blocks
    (131072, 1, (64, 4, 2048, 64)),  # a long span keeps the default tiles
])
def test_decode_tiling(monkeypatch, span, B, want):
    monkeypatch.setattr(td, "_num_sms", lambda device: 132)
    got = td.decode_tiling(8 * B, span, torch.bfloat16, torch.device("cpu"))
    assert got == want and got[2] % got[0] == 0
    # fp32 keeps its unspilled tiles; a forced block or chunk overrides the plan
    fp32 = td.decode_tiling(8 * B, span, torch.float32, torch.device("cpu"))
    assert fp32[:2] == td.default_tiles(torch.float32)
    assert td.launch_plan(8 * B, span, torch.bfloat16, torch.device("cpu"), block_s=32)[0] == 32


@pytest.mark.parametrize("S, B, want", [
    # 128K: 64 splits of 2048 slots at every batch (B = 8 took 999 us so, 1205 with one exact
    # wave of 8 splits and 1696 with 9, a second nearly empty wave)
    (131072, 1, 64), (131072, 4, 64), (131072, 8, 64), (131072, 64, 64),
    # 8K: whole waves of ~4 programs per SM, or 2048-slot chunks when those are more splits
    (8192, 1, 64), (8192, 8, 8), (8192, 16, 4), (8192, 200, 4),
])
def test_long_span_split_plan(monkeypatch, S, B, want):
    monkeypatch.setattr(td, "_num_sms", lambda device: 132)
    chunk, ns = td.split_plan(8 * B, S, 64, torch.device("cpu"))
    assert ns == want and chunk % 64 == 0 and (ns - 1) * chunk < S <= ns * chunk
    assert ns * 8 * B <= max(4 * 132, 8 * B * S // 2048)  # never a nearly empty extra wave


def test_preload_only_when_ready_and_one_block_a_program():
    # kv_ready is a permission; the launch reads the first block early only when that block is a
    # program's whole chunk (more blocks: the held tiles cost the occupancy, README.md)
    assert td.preload_first_block(True, 128, 128)
    assert not td.preload_first_block(True, 256, 128)
    assert not td.preload_first_block(False, 128, 128)


def test_counters_reset_between_launches():
    """Two launches on the same counters: a counter left non-zero would make the second launch's
    last ticket NS - 1 + leftover, nobody would merge and out would keep torch.empty's NaN."""
    q, k, v, q_pos, k_pos, kv_start = split_case()
    for step in range(2):
        if step:
            q, k, v = make_qkv(2, 3, 100, 4, 2, 16)
            q_pos = q_pos.flip(1)
        out = td.attention_decode(q, k, v, q_pos, k_pos, kv_start, None, block_s=16, chunk=32)
        assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, None))
        assert counters_clean()


def test_counters_grow_for_a_larger_batch(monkeypatch):
    """A first launch sizes the counters for its B * Hkv groups; a larger batch grows them (the
    old buffer is kept alive for graphs captured on it) and still merges right."""
    monkeypatch.setattr(td, "MIN_COUNTERS", 1)
    monkeypatch.setattr(td, "_COUNTERS", {})
    monkeypatch.setattr(td, "_RETIRED", [])
    S, Hq, Hkv, D = 70, 4, 2, 16
    for B in (1, 5):
        q, k, v = make_qkv(B, 1, S, Hq, Hkv, D)
        q_pos = torch.randint(0, S, (B, 1))
        k_pos = torch.arange(S).expand(B, S).contiguous()
        kv_start = torch.randint(0, 10, (B,))
        out = td.attention_decode(q, k, v, q_pos, k_pos, kv_start, None, block_s=16, chunk=16)
        assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, None))
        assert td.split_counters(1, torch.device("cpu")).numel() == (2 if B == 1 else 16)
        assert counters_clean()
    assert [t.numel() for t in td._RETIRED] == [2] and not td._RETIRED[0].any()


def test_small_tq_packs_queries_in_one_tile():
    """Tq = 3 queries with their own q_pos (speculative decode) go through the kernel."""
    B, S, Hq, Hkv, D = 2, 63, 4, 2, 16
    q, k, v = make_qkv(B, 3, S, Hq, Hkv, D)
    q_pos = torch.tensor([[60, 61, 62], [10, 30, 2]])
    k_pos = torch.arange(S).expand(B, S).contiguous()
    kv_start = torch.tensor([0, 5])
    for window in (None, 9):
        out = td.attention(q, k, v, q_pos, k_pos, kv_start, window)
        ref = naive.attention(q, k, v, q_pos, k_pos, kv_start, window)
        assert_close(out, ref)
    assert (out[1, 2] == 0).all()


def test_scale_and_strided_inputs():
    """Non-contiguous q/k/v views (head-major cache transposed back) and an explicit scale."""
    B, S, Hq, Hkv, D = 2, 63, 4, 2, 16
    q = torch.randn(B, Hq, 1, D).transpose(1, 2)
    k = torch.randn(B, Hkv, S, D).transpose(1, 2)
    v = torch.randn(B, Hkv, S, D).transpose(1, 2)
    q_pos, k_pos, kv_start = torch.tensor([[62], [40]]), torch.arange(S).expand(B, S), \
        torch.tensor([0, 3])
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, None, 0.3)
    assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, None, 0.3))


@pytest.mark.parametrize("Hq,Hkv", [(4, 2), (3, 1)])
def test_k_pos_none_means_every_row_visible(Hq, Hkv):
    """k_pos=None: no mask at all (q_pos, kv_start and window are ignored, as in the reference)."""
    B, S, D = 2, 200, 16
    q, k, v = make_qkv(B, 1, S, Hq, Hkv, D)
    q_pos, kv_start = torch.tensor([[3], [150]]), torch.tensor([5, 1])
    out = td.attention(q, k, v, q_pos, None, kv_start, 8)
    assert_close(out, naive.attention(q, k, v, q_pos, None, kv_start, 8))
    assert_close(out, naive.attention(q, k, v, torch.full((B, 1), S), torch.arange(S).expand(B, S),
                                      torch.zeros(B, dtype=torch.long)))


def test_fallbacks_prefill_and_autograd():
    """Tq * G > 64 and autograd leave the kernel (CPU -> naive), results and gradients equal."""
    B, S, Hq, Hkv, D = 1, 40, 4, 1, 16
    q, k, v = make_qkv(B, S, S, Hq, Hkv, D)
    pos = torch.arange(S)[None]
    out = td.attention(q, k, v, pos, pos, torch.zeros(1, dtype=torch.long), 8)
    assert_close(out, naive.attention(q, k, v, pos, pos, torch.zeros(1, dtype=torch.long), 8))
    qg = q[:, :1].clone().requires_grad_()
    start = torch.zeros(1, dtype=torch.long)
    td.attention(qg, k, v, pos[:, :1] + S - 1, pos, start).sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()


def test_masked_sdpa_fallback_equals_reference():
    """The CUDA fallback (masked SDPA, fully masked rows forced to zero) on CPU, with gradients."""
    B, S, Hq, Hkv, D = 2, 30, 4, 2, 16
    q, k, v = make_qkv(B, 5, S, Hq, Hkv, D)
    q_pos = torch.tensor([[3, 10, 20, 29, 1], [29, 28, 27, 2, 0]])
    k_pos = torch.arange(S).expand(B, S).contiguous()
    kv_start = torch.tensor([2, 3])  # row 0 query 4 and row 1 queries 3, 4 see nothing
    args = (q_pos, k_pos, kv_start, 6)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    mask_fn = lambda s, e: naive.visible_mask(q_pos[:, s:e], k_pos, kv_start, 6)  # noqa: E731
    out = td.masked_sdpa(*leaves, mask_fn, 1 / math.sqrt(D), query_chunk=2)
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = naive.attention(*ref_leaves, *args)
    assert_close(out, ref)
    assert (out[1, 3:] == 0).all()
    out.square().sum().backward()
    ref.square().sum().backward()
    for a, b in zip(leaves, ref_leaves):
        assert_close(a.grad, b.grad)


def rope_tables(B, Tq, D, device="cpu", start=0):
    """(cos, sin) [B, Tq, D/2] fp32 at scattered positions (rows differ: left padding shifts them)."""
    from clsa.model.layers import rotary_tables
    positions = start + torch.randint(0, 5000, (B, 1), device=device) + torch.arange(Tq, device=device)
    return rotary_tables(positions, D, 10000.0)


@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("D", [20, 64])  # 20: the tile is wider than the head (masked columns)
@pytest.mark.parametrize("Tq", [1, 3])
def test_rope_fused_into_the_query_load(Tq, D, window):
    # the kernel rotates q as it loads it; the reference rotates first, then attends
    B, S, Hq, Hkv = 3, 70, 6, 2
    q, k, v = make_qkv(B, Tq, S, Hq, Hkv, D)
    q_pos = torch.tensor([[40], [69], [0]]) + torch.arange(Tq) - (Tq - 1) * torch.tensor([[0], [1], [0]])
    k_pos, kv_start = torch.arange(S).expand(B, S).contiguous(), torch.tensor([3, 0, 0])
    rope = rope_tables(B, Tq, D)
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, window, rope=rope)
    ref = naive.attention(q, k, v, q_pos, k_pos, kv_start, window, rope=rope)
    assert_close(out, ref)
    # the query (and its rotation) read after the first K/V block: the same result
    assert_close(td.attention_decode(q, k, v, q_pos, k_pos, kv_start, window, rope=rope,
                                     preload=True), ref)
    # it is the rotated query that attends: without the tables the result differs
    assert not torch.allclose(ref, naive.attention(q, k, v, q_pos, k_pos, kv_start, window), atol=1e-3)


def test_rope_on_a_strided_query_and_on_the_fallback():
    # q sliced out of a fused [q | k | v] projection (head stride > D); and a prefill-sized Tq,
    # which takes the fallback: both rotate the same way as the reference
    B, S, Hq, Hkv, D = 2, 40, 4, 2, 16
    qkv = torch.randn(B, 1, Hq + 2 * Hkv, D)
    q = qkv[:, :, :Hq]
    _, k, v = make_qkv(B, 1, S, Hq, Hkv, D)
    q_pos, k_pos, kv_start = torch.tensor([[39], [20]]), torch.arange(S).expand(B, S), torch.zeros(B, dtype=torch.long)
    rope = rope_tables(B, 1, D)
    assert_close(td.attention(q, k, v, q_pos, k_pos, kv_start, rope=rope),
                 naive.attention(q, k, v, q_pos, k_pos, kv_start, rope=rope))
    Tq = 30  # Tq * G = 60 ... past MAX_ROWS with G = 3
    q, k, v = make_qkv(1, Tq, S, 6, 2, D)
    q_pos = torch.arange(10, 10 + Tq)[None]
    rope = rope_tables(1, Tq, D)
    k_pos1 = torch.arange(S)[None]
    assert_close(td.attention(q, k, v, q_pos, k_pos1, torch.zeros(1, dtype=torch.long), rope=rope),
                 naive.attention(q, k, v, q_pos, k_pos1, torch.zeros(1, dtype=torch.long), rope=rope))


def test_rope_tables_of_the_wrong_shape_are_refused():
    q, k, v = make_qkv(2, 1, 10, 4, 2, 16)
    q_pos, k_pos, kv_start = torch.tensor([[9], [9]]), torch.arange(10).expand(2, 10), torch.zeros(2, dtype=torch.long)
    cos, sin = rope_tables(2, 1, 32)  # tables of a 32-dim head for a 16-dim query
    with pytest.raises(ValueError, match=r"rope tables must be \(cos, sin\) of shape \[B, Tq, D/2\]"):
        td.attention(q, k, v, q_pos, k_pos, kv_start, rope=(cos, sin))


# --------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("window", [None, 4096])
@pytest.mark.parametrize("B", [1, 4])
def test_gpu_bf16_dense_decode(B, window):
    S, Hq, Hkv, D = 32768, 24, 8, 128
    q, k, v = make_qkv(B, 1, S, Hq, Hkv, D, torch.bfloat16, "cuda")
    live = torch.tensor([S, 1000, 20000, 32000][:B], device="cuda")
    k_pos = torch.arange(S, device="cuda").expand(B, S).clone()
    k_pos[k_pos >= live[:, None]] = -1
    q_pos = (live - 1)[:, None]
    kv_start = torch.tensor([0, 7, 100, 0][:B], device="cuda")
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, window)
    ref = naive.attention(q.float(), k.float(), v.float(), q_pos, k_pos, kv_start, window)
    mask = naive.visible_mask(q_pos, k_pos, kv_start, window)
    assert_close(out, ref, low_precision=lowp_attention(q, k, v, mask, D ** -0.5))
    # rotary fused into the query load: the reference rotates q (rounded to bf16, as ops.rotary)
    rope = rope_tables(B, 1, D, "cuda", start=100000)
    out = td.attention(q, k, v, q_pos, k_pos, kv_start, window, rope=rope)
    q_rot = rotary_naive.rotary(q, *rope)
    ref = naive.attention(q_rot.float(), k.float(), v.float(), q_pos, k_pos, kv_start, window)
    assert_close(out, ref, low_precision=lowp_attention(q_rot, k, v, mask, D ** -0.5))


@pytest.mark.gpu
def test_gpu_fp32_and_fp16_decode():
    B, S, Hq, Hkv, D = 2, 5000, 24, 8, 128
    for dtype in (torch.float32, torch.float16):
        q, k, v = make_qkv(B, 1, S, Hq, Hkv, D, dtype, "cuda")
        q_pos = torch.tensor([[4999], [1234]], device="cuda")
        k_pos = torch.arange(S, device="cuda").expand(B, S).contiguous()
        kv_start = torch.tensor([0, 9], device="cuda")
        out = td.attention(q, k, v, q_pos, k_pos, kv_start)
        ref = naive.attention(q.float(), k.float(), v.float(), q_pos, k_pos, kv_start)
        if dtype == torch.float32:
            assert_close(out, ref)
        else:
            mask = naive.visible_mask(q_pos, k_pos, kv_start, None)
            assert_close(out, ref, low_precision=lowp_attention(q, k, v, mask, D ** -0.5))


@pytest.mark.gpu
def test_gpu_cuda_graph_replay_follows_live_length():
    """Captured once over the allocated S; replays with a new live length (k_pos, q_pos) match."""
    B, S, Hq, Hkv, D = 1, 32768, 24, 8, 128
    q, k, v = make_qkv(B, 1, S, Hq, Hkv, D, torch.bfloat16, "cuda")
    k_pos = torch.full((B, S), -1, device="cuda")
    q_pos = torch.zeros(B, 1, dtype=torch.long, device="cuda")
    kv_start = torch.zeros(B, dtype=torch.long, device="cuda")
    td.attention(q, k, v, q_pos, k_pos, kv_start)  # compile outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = td.attention(q, k, v, q_pos, k_pos, kv_start)
    for live in (1, 777, 30000):
        k_pos.copy_(torch.where(torch.arange(S, device="cuda") < live,
                                torch.arange(S, device="cuda"), -1).expand(B, S))
        q_pos.fill_(live - 1)
        g.replay()
        ref = naive.attention(q.float(), k.float(), v.float(), q_pos, k_pos, kv_start)
        mask = naive.visible_mask(q_pos, k_pos, kv_start, None)
        assert_close(out, ref, low_precision=lowp_attention(q, k, v, mask, D ** -0.5))
        assert counters_clean("cuda")  # the in-kernel merge (64 splits here) reset its tickets


@pytest.mark.gpu
def test_gpu_cuda_graph_replays_in_kernel_merge():
    """B = 4, Tq = 2 and a window: a graph of two dense launches (both merging in-kernel) replayed
    with new queries; every replay must match and leave the counters at zero."""
    B, S, Hq, Hkv, D = 4, 8192, 24, 8, 128
    q, k, v = make_qkv(B, 2, S, Hq, Hkv, D, torch.bfloat16, "cuda")
    q_pos = torch.tensor([[8190, 8191], [100, 4000], [0, 1], [5000, 5001]], device="cuda")
    k_pos = torch.arange(S, device="cuda").expand(B, S).contiguous()
    kv_start = torch.tensor([0, 50, 2, 7], device="cuda")
    def fn():
        return (td.attention(q, k, v, q_pos, k_pos, kv_start),
                td.attention(q, k, v, q_pos, k_pos, kv_start, 1000))
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        outs = fn()
    for _ in range(3):
        q.copy_(torch.randn_like(q))
        g.replay()
        for out, window in zip(outs, (None, 1000)):
            ref = naive.attention(q.float(), k.float(), v.float(), q_pos, k_pos, kv_start, window)
            mask = naive.visible_mask(q_pos, k_pos, kv_start, window)
            assert_close(out, ref, low_precision=lowp_attention(q, k, v, mask, D ** -0.5))
        assert (outs[0][2] == 0).all() and (outs[1][2] == 0).all()  # q_pos < kv_start
        assert counters_clean("cuda")
