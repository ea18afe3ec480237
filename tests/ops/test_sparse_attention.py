"""Token-sparse decode: in-kernel gather (sparse_attention), gather_kv, and the gathered-buffer
path (gather_kv + dense decode with k_pos = idx), all against the PyTorch references.

CPU: Triton interpreter in fp32, small awkward shapes. GPU (``-m gpu``): bf16 at S = 32K, K = 2048.
"""

import pytest
import torch

from clsa.ops.attention import naive as dense_naive
from clsa.ops.attention import triton_decode as td
from clsa.ops.sparse_attention import naive
from clsa.ops.sparse_attention import triton_decode as sd
from clsa.ops.sparse_attention import triton_gather as tg
from clsa.testing import assert_close

SHAPES = [(4, 2), (3, 1), (2, 2)]  # (Hq, Hkv)


def make_index(B, Tq, S, K, n_valid, device="cpu"):
    """[B, Tq, K] int32: n_valid[b] distinct slots (random order) then -1 padding."""
    idx = torch.full((B, Tq, K), -1, dtype=torch.int32)
    for b in range(B):
        for t in range(Tq):
            n = min(n_valid[b], S, K)
            idx[b, t, :n] = torch.randperm(S)[:n].int()
    return idx.to(device)


def gathered_path(q, k, v, idx):
    """Gather once, then the dense decode kernel over the compact buffer (k_pos = idx)."""
    B, S = k.shape[:2]
    k_sel, v_sel = tg.gather_kv(k, v, idx[:, 0])
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=q.device)
    kv_start = torch.zeros(B, dtype=torch.long, device=q.device)
    return td.attention(q, k_sel, v_sel, q_pos, idx[:, 0], kv_start)


@pytest.mark.parametrize("D", [16, 64])
@pytest.mark.parametrize("Hq,Hkv", SHAPES)
@pytest.mark.parametrize("S,K", [(1, 4), (63, 40), (200, 130)])
def test_sparse_decode_matches_reference(S, K, Hq, Hkv, D):
    """Rows: full index, -1 padded (K > valid entries), all -1 (zeros)."""
    B = 3
    q = torch.randn(B, 1, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    idx = make_index(B, 1, S, K, [K, max(1, K // 3), 0])
    ref = naive.sparse_attention(q, k, v, idx)
    out = sd.sparse_attention(q, k, v, idx)
    assert_close(out, ref)
    assert (out[2] == 0).all()
    assert_close(gathered_path(q, k, v, idx), ref)


@pytest.mark.parametrize("preload", [False, True])
@pytest.mark.parametrize("chunk", [64, 48])  # 48: 3 blocks, padded to 4 in the one-load scan
@pytest.mark.parametrize("skip_empty", [True, False])
def test_sparse_many_blocks_per_split(skip_empty, chunk, preload):
    """Several index blocks per split, -1 runs in the middle, scattered (non-prefix) padding. A
    chunk of 3 blocks scans 4 (a power of 2): the span must stop at the chunk's end, or the next
    chunk's entries would count twice. ``preload``: the first block is gathered before the
    query is read."""
    B, S, K, Hq, Hkv, D = 2, 200, 150, 4, 2, 16
    q = torch.randn(B, 1, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    idx = make_index(B, 1, S, K, [K, 90])
    idx[0, 0, 40:100] = -1
    idx = idx[:, :, torch.randperm(K)].contiguous()
    out = sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=chunk, skip_empty=skip_empty,
                                     preload=preload)
    assert_close(out, naive.sparse_attention(q, k, v, idx))


def sparse_split_case(K=100, S=150):
    """Groups are (sequence, query, K/V head): Tq = 2, Hq = 4, Hkv = 2. Index rows: (0, 0) all
    valid; (0, 1) only its first 10 entries (one split); (1, 0) only -1 (zeros); (1, 1) a -1 run
    over entries 32..47, so that split sees nothing."""
    q = torch.randn(2, 2, 4, 16)
    k, v = torch.randn(2, S, 2, 16), torch.randn(2, S, 2, 16)
    idx = make_index(2, 2, S, K, [K, K])
    idx[0, 1, 10:] = -1
    idx[1, 0] = -1
    idx[1, 1, 32:48] = -1
    return q, k, v, idx


def test_sparse_in_kernel_merge_many_splits():
    """16-entry chunks: NS = 7 splits a group, merged by the group's last program."""
    q, k, v, idx = sparse_split_case()
    out = sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=16)
    assert_close(out, naive.sparse_attention(q, k, v, idx))
    assert (out[1, 0] == 0).all()
    assert not td.split_counters(1, torch.device("cpu")).any()


def test_sparse_single_split_and_counter_reuse(monkeypatch):
    """NS == 1 writes out without a ticket; two launches of NS = 4 on the same counters."""
    def no_counters(*args):
        raise AssertionError("NS == 1 took a ticket")
    q, k, v, idx = sparse_split_case()
    with monkeypatch.context() as m:
        m.setattr(td, "split_counters", no_counters)
        out = sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=112)
        assert_close(out, naive.sparse_attention(q, k, v, idx))
        assert (out[1, 0] == 0).all()
    for step in range(2):
        if step:
            q = torch.randn_like(q)
            idx = idx.flip(0).contiguous()
        out = sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=32)
        assert_close(out, naive.sparse_attention(q, k, v, idx))
        assert not td.split_counters(1, torch.device("cpu")).any()


def test_sparse_counters_grow(monkeypatch):
    """B * Tq * Hkv groups: 2 for the first launch, 12 (grown to 16) for the second."""
    monkeypatch.setattr(td, "MIN_COUNTERS", 1)
    monkeypatch.setattr(td, "_COUNTERS", {})
    monkeypatch.setattr(td, "_RETIRED", [])
    S, K, Hq, Hkv, D = 80, 40, 4, 2, 16
    for B, Tq in ((1, 1), (2, 3)):
        q = torch.randn(B, Tq, Hq, D)
        k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
        idx = make_index(B, Tq, S, K, [K, 25][:B])
        out = sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=16)
        assert_close(out, naive.sparse_attention(q, k, v, idx))
        buf = td.split_counters(1, torch.device("cpu"))
        assert buf.numel() == (2 if B == 1 else 16) and not buf.any()
    assert [t.numel() for t in td._RETIRED] == [2]


def test_sparse_small_tq_and_fallbacks():
    """Tq = 2 (own index per query) in the kernel; Tq > 16 and autograd fall back (CPU: naive)."""
    B, S, K, Hq, Hkv, D = 2, 63, 20, 3, 1, 16
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    for Tq in (2, 17):
        q = torch.randn(B, Tq, Hq, D)
        idx = make_index(B, Tq, S, K, [20, 7])
        assert_close(sd.sparse_attention(q, k, v, idx, 0.2),
                     naive.sparse_attention(q, k, v, idx, 0.2))
    qg = torch.randn(B, 1, Hq, D, requires_grad=True)
    sd.sparse_attention(qg, k, v, make_index(B, 1, S, K, [20, 7])).sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()


@pytest.mark.parametrize("D", [20, 64])  # 20: the tile is wider than the head (masked columns)
@pytest.mark.parametrize("Tq", [1, 3])
def test_sparse_rope_fused_into_the_query_load(Tq, D):
    # the kernel rotates q as it loads it; the reference rotates first, then attends. Rows of a
    # batch sit at different positions, and every query of a row has its own table row.
    from tests.ops.test_attention_decode import rope_tables
    B, S, K, Hq, Hkv = 3, 90, 40, 6, 2
    q = torch.randn(B, Tq, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    idx = make_index(B, Tq, S, K, [K, 17, 0])
    rope = rope_tables(B, Tq, D)
    out = sd.sparse_attention(q, k, v, idx, rope=rope)
    ref = naive.sparse_attention(q, k, v, idx, rope=rope)
    assert_close(out, ref)
    assert not torch.allclose(ref, naive.sparse_attention(q, k, v, idx), atol=1e-3)
    # a forced split (the merge), the first block read before the query, and the Tq > 16
    # fallback rotate the same way
    assert_close(sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=16, rope=rope), ref)
    assert_close(sd.sparse_attention_decode(q, k, v, idx, block_s=16, chunk=16, rope=rope,
                                            preload=True), ref)
    q17, idx17 = torch.randn(1, 17, Hq, D), make_index(1, 17, S, K, [K])
    rope17 = rope_tables(1, 17, D)
    assert_close(sd.sparse_attention(q17, k[:1], v[:1], idx17, rope=rope17),
                 naive.sparse_attention(q17, k[:1], v[:1], idx17, rope=rope17))


def test_sparse_one_block_per_split():
    """The wide short-span tiling (``decode_tiling``): each split is exactly one block (no loop
    beyond it), and blocks of two splits' worth; -1 padding inside and past the last block."""
    B, S, K, Hq, Hkv, D = 2, 300, 256, 6, 2, 32
    q = torch.randn(B, 1, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    idx = make_index(B, 1, S, K, [K, 150])
    ref = naive.sparse_attention(q, k, v, idx)
    for block, chunk in ((64, 64), (128, 128), (64, 128)):
        assert_close(sd.sparse_attention_decode(q, k, v, idx, block_s=block, chunk=chunk), ref)
        assert_close(td.attention_decode(q, *tg.gather_kv(k, v, idx[:, 0]),
                                         torch.full((B, 1), S - 1), idx[:, 0],
                                         torch.zeros(B, dtype=torch.long), block_s=block,
                                         chunk=chunk), ref)


def test_masked_sdpa_sparse_fallback_equals_reference():
    B, S, K, Hq, Hkv, D = 2, 30, 12, 4, 2, 16
    q = torch.randn(B, 5, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    idx = make_index(B, 5, S, K, [12, 3])
    idx[1, 4] = -1
    out = td.masked_sdpa(q, k, v, lambda s, e: naive.index_mask(idx[:, s:e], S), 0.25, 2)
    assert_close(out, naive.sparse_attention(q, k, v, idx, 0.25))


@pytest.mark.parametrize("D", [16, 64])
def test_gather_kv(D):
    B, S, K, Hkv = 2, 200, 75, 3
    k = torch.randn(B, Hkv, S, D).transpose(1, 2)  # strided cache view
    v = torch.randn(B, S, Hkv, D)
    idx = make_index(B, 1, S, K, [75, 30])[:, 0]
    k_sel, v_sel = tg.gather_kv(k, v, idx)
    k_ref, v_ref = naive.gather_kv(k, v, idx)
    valid = idx >= 0
    assert k_sel.shape == (B, K, Hkv, D)
    assert torch.isfinite(k_sel).all() and torch.isfinite(v_sel).all()
    assert torch.equal(k_sel[valid], k_ref[valid]) and torch.equal(v_sel[valid], v_ref[valid])
    assert (k_sel[~valid] == 0).all() and (v_sel[~valid] == 0).all()


def test_full_index_equals_dense_attention():
    """Property: an index covering every slot <= q_pos is dense causal attention."""
    B, S, Hq, Hkv, D = 2, 63, 4, 2, 16
    q = torch.randn(B, 1, Hq, D)
    k, v = torch.randn(B, S, Hkv, D), torch.randn(B, S, Hkv, D)
    q_pos = torch.tensor([[62], [30]])
    idx = torch.where(torch.arange(S)[None] <= q_pos, torch.arange(S)[None], -1).int()[:, None]
    dense = dense_naive.attention(q, k, v, q_pos, torch.arange(S).expand(B, S),
                                  torch.zeros(B, dtype=torch.long))
    assert_close(sd.sparse_attention(q, k, v, idx), dense)


# --------------------------------------------------------------------------------------- GPU
def _lowp_sparse(q, k, v, idx):
    """The same computation by PyTorch in the input dtype (bf16 matmuls): the 2x rule's budget."""
    B, Tq, Hq, D = q.shape
    G = Hq // k.shape[2]
    k_sel, v_sel = naive.gather_kv(k, v, idx[:, 0])
    kt = k_sel.repeat_interleave(G, dim=2).transpose(1, 2)
    vt = v_sel.repeat_interleave(G, dim=2).transpose(1, 2)
    s = torch.einsum("bhcd,bhsd->bhcs", q.transpose(1, 2), kt) * D ** -0.5
    s = s.float().masked_fill((idx[:, None, :, :] < 0), float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0).to(q.dtype)
    return torch.einsum("bhcs,bhsd->bhcd", p, vt).transpose(1, 2)


@pytest.mark.gpu
@pytest.mark.parametrize("B", [1, 4])
def test_gpu_bf16_sparse_decode(B):
    S, K, Hq, Hkv, D = 32768, 2048, 24, 8, 128
    q = torch.randn(B, 1, Hq, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(B, S, Hkv, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    idx = make_index(B, 1, S, K, [K, 1500, 2047, 0][:B], "cuda")
    ref = naive.sparse_attention(q.float(), k.float(), v.float(), idx)
    lowp = _lowp_sparse(q, k, v, idx)
    assert_close(sd.sparse_attention(q, k, v, idx), ref, low_precision=lowp)
    assert_close(gathered_path(q, k, v, idx), ref, low_precision=lowp)
    # rotary fused into the query load: the reference rotates q (rounded to bf16, as ops.rotary)
    from tests.ops.test_attention_decode import rope_tables
    from clsa.ops.rotary import naive as rotary_naive
    rope = rope_tables(B, 1, D, "cuda", start=100000)
    q_rot = rotary_naive.rotary(q, *rope)
    assert_close(sd.sparse_attention(q, k, v, idx, rope=rope),
                 naive.sparse_attention(q_rot.float(), k.float(), v.float(), idx),
                 low_precision=_lowp_sparse(q_rot, k, v, idx))
    k_sel, v_sel = tg.gather_kv(k, v, idx[:, 0])
    k_ref, v_ref = naive.gather_kv(k, v, idx[:, 0])
    valid = idx[:, 0] >= 0
    assert torch.equal(k_sel[valid], k_ref[valid]) and torch.equal(v_sel[valid], v_ref[valid])


@pytest.mark.gpu
def test_gpu_sparse_cuda_graph_replay():
    """One captured in-kernel-gather launch (NS > 1: the merge runs in the kernel) replayed with
    new indices; every replay matches and leaves the ticket counters at zero."""
    B, S, K, Hq, Hkv, D = 2, 32768, 2048, 24, 8, 128
    q = torch.randn(B, 1, Hq, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(B, S, Hkv, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    idx = make_index(B, 1, S, K, [K, 1000], "cuda")
    sd.sparse_attention(q, k, v, idx)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = sd.sparse_attention(q, k, v, idx)
    for n_valid in ([K, 1000], [17, 0], [2047, K]):
        idx.copy_(make_index(B, 1, S, K, n_valid, "cuda"))
        g.replay()
        ref = naive.sparse_attention(q.float(), k.float(), v.float(), idx)
        assert_close(out, ref, low_precision=_lowp_sparse(q, k, v, idx))
        assert not td.split_counters(1, q.device).any()
