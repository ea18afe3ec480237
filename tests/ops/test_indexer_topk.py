"""Triton indexer scoring / top-k against the naive reference (fp32, CPU interpreter), plus
GPU-only bf16 checks at S = 128K. The selection checks (sets, and properties that need no second
implementation) are in topk_helpers.py; 8-bit keys are tested in test_indexer_int8.py.
"""

import pytest
import torch

import clsa.ops
from clsa.ops.indexer_topk import naive
from clsa.ops.indexer_topk import triton_topk as tt
from clsa.testing import assert_close
from tests.ops.topk_helpers import (SCORE_CASES, TOPK_CASES, check_selection, check_selection_gpu,
                                    gpu_case, inputs, sorted_rows, visible, workspace_left_clean)


@pytest.fixture(autouse=True)
def _clean_workspace(workspace_left_clean):
    """Every test here also checks that the top-k workspace is left zeroed."""


@pytest.mark.parametrize("S,Hi,Tq,scoring,with_w", SCORE_CASES)
def test_scores_match_reference(S, Hi, Tq, scoring, with_w):
    q, k, w, q_pos, kv_start = inputs(2, Tq, S, Hi, 32, with_w)
    out = tt.indexer_scores(q, k, w, q_pos, kv_start, scoring)
    ref = naive.indexer_scores(q, k, w, q_pos, kv_start, scoring)
    assert torch.equal(torch.isneginf(out), torch.isneginf(ref)), "visibility mask differs"
    fin = torch.isfinite(ref)
    assert_close(out[fin], ref[fin])


@pytest.mark.parametrize("B,Tq,S,Hi,Di,top_k,scoring,with_w", TOPK_CASES)
def test_topk_matches_reference(B, Tq, S, Hi, Di, top_k, scoring, with_w):
    q, k, w, q_pos, kv_start = inputs(B, Tq, S, Hi, Di, with_w)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring)
    ref = naive.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring)
    assert torch.equal(sorted_rows(idx, S), ref)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start, scoring)
    check_selection(idx, scores, visible(q_pos, kv_start, S), top_k)


@pytest.mark.parametrize("scoring,top_k", [("dot", 37), ("relu", 150), ("relu", 600)])
def test_topk_ties(scoring, top_k):
    # integer entries: a few dozen distinct scores over 1000 slots, the threshold inside a tie;
    # relu adds a big tie at exactly 0 (and -0.0 must rank with +0.0)
    q, k, w, q_pos, kv_start = inputs(2, 2, 1000, 3, 16, True, ints=True)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, top_k, scoring, scale=1.0)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start, scoring, scale=1.0)
    check_selection(idx, scores, visible(q_pos, kv_start, 1000), top_k)


def test_topk_all_equal_scores():
    # every visible score identical: all four radix digits land in one bin, k ties are taken
    q, k, w, q_pos, kv_start = inputs(2, 1, 500, 1, 16, False)
    k = torch.ones_like(k)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, 64)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start)
    check_selection(idx, scores, visible(q_pos, kv_start, 500), 64)


@pytest.mark.parametrize("chunk,block", [(None, None), (128, 128)])
def test_topk_separated_scores(chunk, block):
    # the k winners share one bin of key bits 31..24 ([32, 128)) far above the rest: pass 2 takes
    # that bin whole and pass 3 has nothing to do
    B, S, top_k = 2, 1000, 40
    q = torch.zeros(B, 1, 1, 16)
    q[..., 0] = 1.0
    k = torch.randn(B, S, 16) * 0.3
    win = torch.stack([torch.randperm(S)[:top_k] for _ in range(B)])
    k[torch.arange(B)[:, None], win, 0] = 64 + 60 * torch.rand(B, top_k)
    q_pos, kv_start = torch.full((B, 1), S - 1), torch.zeros(B, dtype=torch.long)
    idx = tt.topk_launch(q, k, None, q_pos, kv_start, top_k, scale=1.0, chunk=chunk, block=block)
    assert torch.equal(sorted_rows(idx, S), win.sort(-1).values.int()[:, None])
    assert torch.equal(sorted_rows(idx, S),
                       naive.indexer_topk(q, k, None, q_pos, kv_start, top_k, scale=1.0))


def test_topk_never_selects_invisible_slots():
    # slots after q_pos and before kv_start hold keys with huge scores
    B, S, Di = 3, 400, 32
    q, k, w, q_pos, kv_start = inputs(B, 1, S, 1, Di, False)
    q_pos = torch.tensor([[150], [399], [260]])
    kv_start = torch.tensor([20, 0, 100])
    for b in range(B):
        k[b, q_pos[b, 0] + 1:] = 1e4 * q[b, 0, 0]
        k[b, :kv_start[b]] = 1e4 * q[b, 0, 0]
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, 50)
    assert torch.equal(sorted_rows(idx, S), naive.indexer_topk(q, k, w, q_pos, kv_start, 50))
    check_selection(idx, naive.indexer_scores(q, k, w, q_pos, kv_start),
                     visible(q_pos, kv_start, S), 50)


def test_topk_row_without_visible_slots():
    q, k, w, q_pos, kv_start = inputs(2, 1, 100, 1, 16, False)
    q_pos, kv_start = torch.tensor([[10], [99]]), torch.tensor([40, 0])  # row 0: q_pos < start
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, 20)
    assert (idx[0] == -1).all()
    assert torch.equal(sorted_rows(idx, 100), naive.indexer_topk(q, k, w, q_pos, kv_start, 20))


@pytest.mark.parametrize("ints", [False, True])
def test_topk_many_programs_and_chunks(ints):
    # small chunks and 3 programs per row: cyclic chunk ownership, several atomics per bin,
    # a live range that starts and ends inside a chunk
    q, k, w, q_pos, kv_start = inputs(2, 1, 1000, 3, 16, True, ints=ints)
    kv_start[0] = 37
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, 90, "relu", block_s=16, chunk=64, block=128)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start, "relu")
    check_selection(idx, scores, visible(q_pos, kv_start, 1000), 90)
    if not ints:
        ref = naive.indexer_topk(q, k, w, q_pos, kv_start, 90, "relu")
        assert torch.equal(sorted_rows(idx, 1000), ref)


@pytest.mark.parametrize("B,key_bits,want", [
    (1, 16, dict(chunk=512, block=256, num_warps=4, warps_gather=8)),
    (1, 8, dict(chunk=512, block=256, num_warps=8, warps_gather=8)),
    (8, 16, dict(chunk=2048, block=1024, num_warps=4, warps_gather=4)),
    (8, 8, dict(chunk=2048, block=1024, num_warps=8, warps_gather=4)),
    (2, 16, dict(chunk=512, block=512, num_warps=4, warps_gather=8))])
def test_topk_config_on_132_sms_at_128k(B, key_bits, want):
    # the GPU tiling the H200 sweeps chose for the yoco-3b indexer (bf16 query, one head, Di 128)
    q = torch.zeros(B, 1, 1, 128, dtype=torch.bfloat16)
    k = torch.zeros(B, 8, 128, dtype=torch.int8 if key_bits == 8 else torch.bfloat16)
    ks = torch.ones(B, 8) if key_bits == 8 else None
    meta = tt._prepare(q, k, None, torch.zeros(B, 1), torch.zeros(B), "dot", None, ks)[-1]
    cfg = tt.topk_config(meta, B, 131072, 132)
    assert {key: cfg[key] for key in want} == want


def _exact_scores(vals):
    """q, k with q . k == vals exactly (scale 1): vals [B, S] -> a decode query per row."""
    B, S = vals.shape
    q = torch.zeros(B, 1, 1, 16)
    q[..., 0] = 1.0
    k = torch.randn(B, S, 16)
    k[..., 0] = vals
    return q, k, torch.full((B, 1), S - 1), torch.zeros(B, dtype=torch.long)


def test_topk_second_digit_bin_taken_whole():
    # winners at 1.5 + i / 1024: eight per bin of key bits 23..16 (width 1 / 128), losers in
    # [1, 1.25): the threshold bin of pass 3 holds exactly the winners still needed
    S, top_k = 600, 64
    vals = 1.0 + 0.25 * torch.rand(2, S)
    win = torch.stack([torch.randperm(S)[:top_k] for _ in range(2)])
    vals[torch.arange(2)[:, None], win] = 1.5 + torch.arange(top_k).float() / 1024
    q, k, q_pos, kv_start = _exact_scores(vals)
    idx = tt.topk_launch(q, k, None, q_pos, kv_start, top_k, scale=1.0, chunk=64, block=64)
    assert torch.equal(sorted_rows(idx, S), win.sort(-1).values.int()[:, None])


@pytest.mark.parametrize("cap", [None, 1, 150])
def test_topk_long_candidate_list(cap):
    # 300 scores 8 ulp apart inside one bin of bits 31..16, 100 of them selected: the last step
    # runs two radix passes over a list longer than its 32-item block. cap=1: the list overflows
    # and the last step reads the whole row instead; cap=150: exactly too short by half
    S, top_k = 1000, 100
    vals = 0.5 * torch.rand(2, S)
    pos = torch.stack([torch.randperm(S)[:300] for _ in range(2)])
    vals[torch.arange(2)[:, None], pos] = 1.5 + torch.randperm(300).float() * 2.0 ** -20
    q, k, q_pos, kv_start = _exact_scores(vals)
    q_pos[0] = 900  # a row that ends inside a block
    idx = tt.topk_launch(q, k, None, q_pos, kv_start, top_k, scale=1.0, block_s=16, chunk=64,
                         block=32, cap=cap)
    assert torch.equal(sorted_rows(idx, S),
                       naive.indexer_topk(q, k, None, q_pos, kv_start, top_k, scale=1.0))


@pytest.mark.parametrize("equal", [False, True])
def test_topk_candidate_overflow_reads_full_row(equal):
    # cap=2: the threshold bin of the long rows overflows the candidate list, and the threshold
    # sits inside a tie (integer data, or every score equal) spanning many blocks of the row
    q, k, w, q_pos, kv_start = inputs(3, 1, 700, 1, 16, False, ints=True)
    if equal:
        k = torch.ones_like(k)
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, 45, scale=1.0, chunk=64, block=64, cap=2)
    scores = naive.indexer_scores(q, k, w, q_pos, kv_start, scale=1.0)
    check_selection(idx, scores, visible(q_pos, kv_start, 700), 45)


@pytest.mark.parametrize("S,block_s,chunk,block", [(777, 16, 64, 32), (777, 32, 256, 128),
                                                   (1000, 16, 16, 256)])
def test_topk_chunks_not_multiple_of_blocks(S, block_s, chunk, block):
    # S, kv_start and q_pos fall inside tiles, chunks and blocks; pass 1 and passes 2/3 split the
    # row differently
    q, k, w, q_pos, kv_start = inputs(3, 2, S, 2, 24, True)
    kv_start[0], q_pos[0] = 5, torch.tensor([S - 3, 300])
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, 77, "relu", block_s=block_s, chunk=chunk,
                         block=block)
    ref = naive.indexer_topk(q, k, w, q_pos, kv_start, 77, "relu")
    assert torch.equal(sorted_rows(idx, S), ref)


@pytest.mark.parametrize("top_k", [1, 3])
def test_topk_single_slot(top_k):
    # S = 1: row 0 sees its one slot, row 1 sees nothing (kv_start past q_pos)
    q, k, w, _, _ = inputs(2, 1, 1, 1, 16, False)
    q_pos, kv_start = torch.zeros(2, 1, dtype=torch.long), torch.tensor([0, 1])
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, top_k)
    want = torch.full((2, 1, top_k), -1, dtype=torch.int32)
    want[0, 0, 0] = 0
    assert torch.equal(idx, want)


def test_topk_mixed_rows_one_invisible():
    # per row: nothing visible, fewer visible slots than k, and two long rows of different length
    S, top_k = 900, 60
    q, k, w, _, _ = inputs(4, 1, S, 1, 16, False)
    q_pos = torch.tensor([[100], [130], [512], [S - 1]])
    kv_start = torch.tensor([101, 90, 7, 0])
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, top_k, chunk=64, block=128)
    assert (idx[0] == -1).all() and (idx[1, 0, :41] >= 0).all() and (idx[1, 0, 41:] == -1).all()
    assert torch.equal(sorted_rows(idx, S), naive.indexer_topk(q, k, w, q_pos, kv_start, top_k))
    check_selection(idx, naive.indexer_scores(q, k, w, q_pos, kv_start),
                     visible(q_pos, kv_start, S), top_k)


def test_many_queries_fall_back_to_reference():
    q, k, w, q_pos, kv_start = inputs(1, tt.MAX_TQ + 1, 64, 1, 16, False)
    assert torch.equal(tt.indexer_topk(q, k, w, q_pos, kv_start, 8),
                       naive.indexer_topk(q, k, w, q_pos, kv_start, 8))


def test_scores_with_autograd_use_reference():
    q, k, w, q_pos, kv_start = inputs(1, 1, 32, 2, 16, True)
    q.requires_grad_(True)
    out = tt.indexer_scores(q, k, w, q_pos, kv_start, "relu")
    out[torch.isfinite(out)].sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_backend_switch_reaches_kernel():
    q, k, w, q_pos, kv_start = inputs(2, 1, 63, 1, 16, False)
    with clsa.ops.use_backend("triton"):
        idx = clsa.ops.indexer_topk(q, k, w, q_pos, kv_start, 8)
    assert torch.equal(sorted_rows(idx, 63), naive.indexer_topk(q, k, w, q_pos, kv_start, 8))


@pytest.mark.gpu
@pytest.mark.parametrize("B,Hi,scoring", [(1, 1, "dot"), (8, 1, "dot"), (8, 4, "relu")])
def test_gpu_bf16_128k_matches_fp32_reference(B, Hi, scoring):
    S, K = 131072, 2048
    q, k, w, q_pos, kv_start = gpu_case(B, S, Hi, seed=B)
    idx = tt.indexer_topk(q, k, w, q_pos, kv_start, K, scoring)
    qf, kf = q.float(), k.float()
    ref = naive.indexer_topk(qf, kf, w, q_pos, kv_start, K, scoring)
    scores = naive.indexer_scores(qf, kf, w, q_pos, kv_start, scoring)
    check_selection_gpu(idx, ref, scores, visible(q_pos, kv_start, S), K)


@pytest.mark.gpu
def test_gpu_topk_replays_in_cuda_graph():
    # no host sync, scratch allocated inside the capture: a graph replay follows new q_pos values
    S, K = 131072, 2048
    q, k, w, q_pos, kv_start = gpu_case(4, S, 1, seed=7)
    q_pos.fill_(S // 4)
    tt.indexer_topk(q, k, w, q_pos, kv_start, K)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        idx = tt.indexer_topk(q, k, w, q_pos, kv_start, K)
    q_pos.copy_(torch.tensor([[S - 1], [1000], [S // 2], [70000]], device="cuda"))
    graph.replay()
    eager = tt.indexer_topk(q, k, w, q_pos, kv_start, K)
    scores = naive.indexer_scores(q.float(), k.float(), w, q_pos, kv_start)
    check_selection_gpu(idx, eager, scores, visible(q_pos, kv_start, S), K)


@pytest.mark.gpu
@pytest.mark.parametrize("dist,cap", [("offset", None), ("ties", None), ("randn", 1)])
def test_gpu_candidate_paths(dist, cap):
    # offset: scores 45 +- 0.25, thousands of candidates gathered by hundreds of programs for the
    # last one to resolve; ties: the candidate list overflows and the full-row path runs;
    # randn with cap=1: the full-row path on ordinary data
    from clsa.ops.indexer_topk.bench import _inputs as bench_inputs
    S, K = 131072, 2048
    q, k, w, q_pos, kv_start = bench_inputs(4, S, 1, 128, torch.bfloat16, dist)
    q_pos[1] = S // 3
    idx = tt.topk_launch(q, k, w, q_pos, kv_start, K, cap=cap)
    qf, kf = q.float(), k.float()
    ref = naive.indexer_topk(qf, kf, w, q_pos, kv_start, K)
    scores = naive.indexer_scores(qf, kf, w, q_pos, kv_start)
    check_selection_gpu(idx, ref, scores, visible(q_pos, kv_start, S), K)
