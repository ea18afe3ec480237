"""8-bit indexer keys (int8 + one fp32 scale per slot): the quantizer's error bound, every backend
against the naive reference (which dequantizes), the fall-backs, and the selection's recall
against unquantized keys. GPU-only: bf16 queries at S = 128K and a CUDA-graph replay.
"""

import pytest
import torch

import clsa.ops
from clsa.ops.indexer_topk import naive, stock
from clsa.ops.indexer_topk import triton_topk as tt
from clsa.ops.indexer_topk.quant import dequantize_keys, join_query, quantize_keys, split_query
from clsa.testing import assert_close
from tests.ops.topk_helpers import (SCORE_CASES, TOPK_CASES, check_selection, check_selection_gpu,
                                    gpu_case, inputs, sorted_rows, visible, workspace_left_clean)


@pytest.fixture(autouse=True)
def _clean_workspace(workspace_left_clean):
    """Every test here also checks that the top-k workspace is left zeroed."""


def inputs8(B, Tq, S, Hi, Di, with_w):
    """``inputs`` with 8-bit keys: slot magnitudes spread over e^+-1, so the per-slot scale
    reorders the scores (a path that ignored k_scale would select other slots)."""
    q, k, w, q_pos, kv_start = inputs(B, Tq, S, Hi, Di, with_w)
    k_q, k_scale = quantize_keys(k * torch.randn(B, S, 1).exp())
    return q, k_q, k_scale, w, q_pos, kv_start


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_round_trip_error_bound(dtype):
    k = (torch.randn(3, 50, 24) * torch.randn(3, 50, 1).exp() * 10).to(dtype)
    k[0, 7] = 0  # an all-zero slot: scale 1, dequantized to exact zeros
    k[1, 3] = 0
    k[1, 3, 5] = -1e-30 if dtype == torch.float32 else -1.0  # one entry alone sets the scale
    k_q, k_scale = quantize_keys(k)
    assert k_q.dtype == torch.int8 and k_q.shape == k.shape
    assert k_scale.dtype == torch.float32 and k_scale.shape == k.shape[:2]
    assert k_q.abs().max() <= 127 and (k_scale > 0).all()
    # the largest entry of every non-zero slot lands on +-127 (the full int8 range is used)
    nonzero = k.float().abs().amax(-1) > 0
    assert (k_q.abs().amax(-1)[nonzero] == 127).all()
    assert (k_q[0, 7] == 0).all() and k_scale[0, 7] == 1
    deq = dequantize_keys(k_q, k_scale)
    err = (k.float() - deq).abs()
    # |k - k_q * scale| <= scale / 2 (nearest step), plus the fp32 rounding of k / scale and of
    # k_q * scale: each at most 127 * 2^-24 (8e-6) of the scale
    assert (err <= k_scale[..., None] * (0.5 + 2e-5)).all(), (err / k_scale[..., None]).max()
    assert torch.equal(deq[0, 7], torch.zeros(24))


def test_split_query_error_bound():
    q = torch.randn(3, 5, 2, 40) * torch.randn(3, 5, 2, 1).exp() * 10
    q[0, 0, 1] = 0  # an all-zero head: s1 = 1, both parts zero
    q[1, 2, 0, 7] = -3e4  # one entry alone sets s1
    hi, lo, s1 = split_query(q)
    assert hi.dtype == lo.dtype == torch.int8 and s1.shape == q.shape[:-1]
    assert (hi[q.abs().amax(-1) > 0].abs().amax(-1) == 127).all()  # hi spans the int8 range
    assert s1[0, 0, 1] == 1 and (hi[0, 0, 1] == 0).all() and (lo[0, 0, 1] == 0).all()
    err = (q - join_query(hi, lo, s1)).abs()
    # s1 / 508 from the two roundings, plus fp32 rounding of q / s1 (127 * 2^-24 of s1)
    assert (err <= s1[..., None] * (1 / 508 + 1e-5)).all(), (err / s1[..., None]).max()
    assert (err <= q.abs().amax(-1, keepdim=True) / 64516 * 1.01).all()


@pytest.mark.parametrize("B,Tq,S,Hi,Di,top_k,scoring,with_w", TOPK_CASES)
def test_topk_int8_keys_16bit_query_takes_int8_dots(B, Tq, S, Hi, Di, top_k, scoring, with_w):
    # a bf16 query with 8-bit keys goes to the int8 tensor cores as two int8 parts: the selection
    # is exactly the reference's for the effective query s1 * (hi + lo / 254)
    q, k, ks, w, q_pos, kv_start = inputs8(B, Tq, S, Hi, Di, with_w)
    q = q.bfloat16()
    assert tt._prepare(q, k, w, q_pos, kv_start, scoring, None, ks)[-1]["I8DOT"]
    q_eff = join_query(*split_query(q))
    ref = naive.indexer_topk(q_eff, k, w, q_pos, kv_start, top_k, scoring, k_scale=ks)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, k_scale=ks)
    assert torch.equal(sorted_rows(idx, S), ref)
    out = tt.indexer_scores(q, k, w, q_pos, kv_start, scoring, k_scale=ks)
    want = naive.indexer_scores(q_eff, k, w, q_pos, kv_start, scoring, k_scale=ks)
    assert torch.equal(torch.isneginf(out), torch.isneginf(want))
    fin = torch.isfinite(want)
    assert_close(out[fin], want[fin], fp32_tol=2e-6)  # exact int32 dots: fp32 rounding only
    check_selection(idx, want, visible(q_pos, kv_start, S), top_k)


@pytest.mark.parametrize("S,Hi,Tq,scoring,with_w", SCORE_CASES)
def test_scores_int8_match_reference(S, Hi, Tq, scoring, with_w):
    q, k, ks, w, q_pos, kv_start = inputs8(2, Tq, S, Hi, 32, with_w)
    out = tt.indexer_scores(q, k, w, q_pos, kv_start, scoring, k_scale=ks)
    ref = naive.indexer_scores(q, k, w, q_pos, kv_start, scoring, k_scale=ks)
    assert torch.equal(torch.isneginf(out), torch.isneginf(ref)), "visibility mask differs"
    fin = torch.isfinite(ref)
    assert_close(out[fin], ref[fin])
    st = stock.indexer_scores(q, k, w, q_pos, kv_start, scoring, k_scale=ks)
    assert torch.equal(torch.isneginf(st), torch.isneginf(ref))
    assert_close(st[fin], ref[fin])


@pytest.mark.parametrize("B,Tq,S,Hi,Di,top_k,scoring,with_w", TOPK_CASES)
def test_topk_int8_matches_reference(B, Tq, S, Hi, Di, top_k, scoring, with_w):
    q, k, ks, w, q_pos, kv_start = inputs8(B, Tq, S, Hi, Di, with_w)
    ref = naive.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, k_scale=ks)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, k_scale=ks)
    assert torch.equal(sorted_rows(idx, S), ref)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start, scoring, k_scale=ks)
    check_selection(idx, scores, visible(q_pos, kv_start, S), top_k)
    idx = stock.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, k_scale=ks)
    assert torch.equal(sorted_rows(idx, S), ref)


def test_topk_int8_strided_cache_views_and_many_programs():
    # the growing cache hands out [:, :S] views of [B, cap, Di] / [B, cap] buffers (batch strides
    # cap * Di and cap); small tiles give many programs and chunks per row
    B, S, cap, Di = 2, 700, 1024, 24
    q, k, ks, w, q_pos, kv_start = inputs8(B, 2, S, 2, Di, True)
    k_buf = torch.zeros(B, cap, Di, dtype=torch.int8)
    ks_buf = torch.zeros(B, cap)
    k_buf[:, :S], ks_buf[:, :S] = k, ks
    kv, ksv = k_buf[:, :S], ks_buf[:, :S]
    ref = naive.indexer_topk(q, k, w, q_pos, kv_start, 77, "relu", k_scale=ks)
    idx = tt.topk_launch(q, kv, w, q_pos, kv_start, 77, "relu", k_scale=ksv, block_s=16,
                         chunk=64, block=128)
    assert torch.equal(sorted_rows(idx, S), ref)
    out = tt.indexer_scores(q, kv, w, q_pos, kv_start, "relu", k_scale=ksv)
    want = naive.indexer_scores(q, k, w, q_pos, kv_start, "relu", k_scale=ks)
    fin = torch.isfinite(want)
    assert_close(out[fin], want[fin])


def test_int8_fall_backs_pass_k_scale(monkeypatch):
    q, k, ks, w, q_pos, kv_start = inputs8(1, tt.MAX_TQ + 1, 300, 2, 16, True)
    ref = naive.indexer_topk(q, k, w, q_pos, kv_start, 20, "relu", k_scale=ks)
    assert not torch.equal(ref, naive.indexer_topk(q, k.float(), w, q_pos, kv_start, 20, "relu"))
    # many queries per row
    assert torch.equal(tt.indexer_topk(q, k, w, q_pos, kv_start, 20, "relu", k_scale=ks), ref)
    # autograd
    qg = q[:, :2].clone().requires_grad_(True)
    out = tt.indexer_scores(qg, k, w[:, :2], q_pos[:, :2], kv_start, "relu", k_scale=ks)
    assert torch.equal(out, naive.indexer_scores(q[:, :2], k, w[:, :2], q_pos[:, :2], kv_start,
                                                 "relu", k_scale=ks))
    out[torch.isfinite(out)].sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()
    # tensors Triton cannot run on (CPU without the interpreter)
    monkeypatch.setattr(tt, "kernel_ok", lambda *t: False)
    one = (q[:, :1], k, w[:, :1], q_pos[:, :1], kv_start)
    assert torch.equal(tt.indexer_topk(*one, 20, "relu", k_scale=ks),
                       naive.indexer_topk(*one, 20, "relu", k_scale=ks))


def test_int8_bad_arguments():
    q, k, ks, w, q_pos, kv_start = inputs8(1, 1, 64, 1, 16, False)
    with pytest.raises(ValueError, match="int8 keys need k_scale"):
        tt.indexer_topk(q, k, w, q_pos, kv_start, 8)
    with pytest.raises(ValueError, match="k_scale must be"):
        tt.indexer_topk(q, k, w, q_pos, kv_start, 8, k_scale=ks[:, :10])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_backend_switch_passes_k_scale(backend):
    q, k, ks, w, q_pos, kv_start = inputs8(2, 1, 200, 3, 16, True)
    with clsa.ops.use_backend(backend):
        idx = clsa.ops.indexer_topk(q, k, w, q_pos, kv_start, 30, "relu", k_scale=ks)
    assert torch.equal(sorted_rows(idx, 200),
                       naive.indexer_topk(q, k, w, q_pos, kv_start, 30, "relu", k_scale=ks))


@pytest.mark.parametrize("Hi,scoring", [(1, "dot"), (4, "relu")])
def test_int8_selection_recalls_the_16bit_selection(Hi, scoring):
    # Gaussian keys at the yoco-3b indexer width: quantization moves each score by about 0.5% of
    # the score spread, so at most a few slots next to the threshold change places
    B, S, Di, K = 2, 4096, 128, 256
    q = torch.randn(B, 1, Hi, Di)
    k = torch.randn(B, S, Di)
    w = torch.rand(B, 1, Hi) if Hi > 1 else None
    q_pos, kv_start = torch.full((B, 1), S - 1), torch.zeros(B, dtype=torch.long)
    exact = naive.indexer_topk(q, k, w, q_pos, kv_start, K, scoring)
    k_q, k_scale = quantize_keys(k)
    approx = naive.indexer_topk(q, k_q, w, q_pos, kv_start, K, scoring, k_scale=k_scale)
    for b in range(B):
        a, e = set(approx[b, 0].tolist()), set(exact[b, 0].tolist())
        assert len(a & e) / K >= 0.9, f"recall {len(a & e) / K:.3f}"


@pytest.mark.gpu
@pytest.mark.parametrize("B,Hi,scoring", [(1, 1, "dot"), (8, 1, "dot"), (8, 4, "relu")])
def test_gpu_bf16_query_int8_keys_128k_match_fp32_reference(B, Hi, scoring):
    S, K = 131072, 2048
    q, k, w, q_pos, kv_start = gpu_case(B, S, Hi, seed=B)
    k_q, k_scale = quantize_keys(k)
    idx = tt.indexer_topk(q, k_q, w, q_pos, kv_start, K, scoring, k_scale=k_scale)
    qf = q.float()
    ref = naive.indexer_topk(qf, k_q, w, q_pos, kv_start, K, scoring, k_scale=k_scale)
    scores = naive.indexer_scores(qf, k_q, w, q_pos, kv_start, scoring, k_scale=k_scale)
    check_selection_gpu(idx, ref, scores, visible(q_pos, kv_start, S), K)


@pytest.mark.gpu
def test_gpu_int8_topk_replays_in_cuda_graph():
    S, K = 131072, 2048
    q, k, w, q_pos, kv_start = gpu_case(4, S, 1, seed=7)
    k_q, k_scale = quantize_keys(k)
    q_pos.fill_(S // 4)
    tt.indexer_topk(q, k_q, w, q_pos, kv_start, K, k_scale=k_scale)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        idx = tt.indexer_topk(q, k_q, w, q_pos, kv_start, K, k_scale=k_scale)
    q_pos.copy_(torch.tensor([[S - 1], [1000], [S // 2], [70000]], device="cuda"))
    graph.replay()
    eager = tt.indexer_topk(q, k_q, w, q_pos, kv_start, K, k_scale=k_scale)
    scores = naive.indexer_scores(q.float(), k_q, w, q_pos, kv_start, k_scale=k_scale)
    check_selection_gpu(idx, eager, scores, visible(q_pos, kv_start, S), K)
