"""Inputs and selection checks shared by the indexer top-k tests (16-bit and 8-bit keys).

Selections are compared as sets (the kernel emits valid slots in no particular order) and by
properties that need no second implementation: right count, -1 only at the end, unique, visible,
and every selected score >= every unselected visible score (the only freedom is among ties).
"""

import pytest
import torch


def inputs(B, Tq, S, Hi, Di, with_w, dtype=torch.float32, device="cpu", ints=False):
    """Random queries/keys; mixed q_pos per row (the last row sees everything) and kv_start > 0
    on some rows. ``ints`` gives small integer entries, so many scores tie exactly."""
    if ints:
        q = torch.randint(-1, 2, (B, Tq, Hi, Di), device=device).to(dtype)
        k = torch.randint(-1, 2, (B, S, Di), device=device).to(dtype)
        w = torch.randint(1, 3, (B, Tq, Hi), device=device).float() if with_w else None
    else:
        q = torch.randn(B, Tq, Hi, Di, device=device).to(dtype)
        k = torch.randn(B, S, Di, device=device).to(dtype)
        w = torch.rand(B, Tq, Hi, device=device) if with_w else None
    q_pos = torch.randint(0, S, (B, Tq), device=device)
    q_pos[-1] = S - 1
    kv_start = torch.randint(0, max(1, S // 4), (B,), device=device)
    kv_start[-1] = 0
    return q, k, w, q_pos, kv_start


def visible(q_pos, kv_start, S):
    slots = torch.arange(S, device=q_pos.device)
    return (slots <= q_pos[..., None]) & (slots >= kv_start[:, None, None])  # [B, Tq, S]


def sorted_rows(idx, S):
    """Valid slots ascending, then -1: the reference's layout."""
    big = torch.where(idx >= 0, idx, torch.full_like(idx, S + 1)).sort(-1).values
    return torch.where(big <= S, big, torch.full_like(big, -1))


def check_selection(idx, scores, visible, top_k):
    """The properties every correct top-k selection has, ties or not."""
    B, Tq, S = scores.shape
    assert idx.shape == (B, Tq, top_k) and idx.dtype == torch.int32
    valid = idx >= 0
    assert ((idx >= -1) & (idx < S)).all(), "index out of range (an unwritten slot?)"
    want = visible.sum(-1).clamp(max=top_k)
    assert torch.equal(valid.sum(-1), want), "wrong number of selected slots"
    assert (valid[..., :-1] >= valid[..., 1:]).all(), "-1 padding before a valid slot"
    slot = torch.where(valid, idx.long(), torch.full_like(idx, S, dtype=torch.long))
    chosen = torch.zeros(B, Tq, S + 1, dtype=torch.bool).scatter_(2, slot, True)[..., :S]
    assert torch.equal(chosen.sum(-1), want), "a slot is selected twice"
    assert not (chosen & ~visible).any(), "an invisible slot is selected"
    sel_min = torch.where(chosen, scores, float("inf")).amin(-1)
    rest_max = torch.where(visible & ~chosen, scores, float("-inf")).amax(-1)
    assert (sel_min >= rest_max).all(), "an unselected visible slot outscores a selected one"


def gpu_case(B, S, Hi, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, 1, Hi, 128, device="cuda", generator=g).bfloat16()
    k = torch.randn(B, S, 128, device="cuda", generator=g).bfloat16()
    w = torch.rand(B, 1, Hi, device="cuda", generator=g) if Hi > 1 else None
    q_pos = torch.randint(S // 2, S, (B, 1), device="cuda", generator=g)
    q_pos[0] = S - 1
    kv_start = torch.zeros(B, dtype=torch.long, device="cuda")
    if B > 1:
        q_pos[1] = 1500  # fewer visible slots than k: selects all of them
        kv_start[-1] = 777
    return q, k, w, q_pos, kv_start


def check_selection_gpu(idx, ref, scores, visible, K):
    """Same count, unique, visible; sets may differ only among near-tied threshold scores."""
    S = scores.shape[-1]
    valid = idx >= 0
    assert torch.equal(valid.sum(-1), visible.sum(-1).clamp(max=K))
    assert (valid[..., :-1] >= valid[..., 1:]).all()
    slot = torch.where(valid, idx.long(), torch.full_like(idx, S, dtype=torch.long))
    chosen = torch.zeros(*scores.shape[:2], S + 1, dtype=torch.bool, device=idx.device)
    chosen = chosen.scatter_(2, slot, True)[..., :S]
    assert torch.equal(chosen.sum(-1), valid.sum(-1)) and not (chosen & ~visible).any()
    gather = lambda ix: torch.where(ix >= 0, scores.gather(2, ix.clamp(min=0).long()), 0.)
    got, want = gather(idx).sum(-1), gather(ref).sum(-1)
    eps = 1e-6 * gather(ref).abs().sum(-1) + 1e-4
    assert (got >= want - eps).all(), f"selection worse than the reference: {got - want}"


# (S, Hi, Tq, scoring, with_w) of the scoring tests, for 16-bit and 8-bit keys alike
SCORE_CASES = [
    (1, 1, 1, "dot", False),
    (63, 3, 2, "relu", True),
    (200, 1, 1, "relu", False),
    (1000, 3, 1, "dot", True),
]

# (B, Tq, S, Hi, Di, top_k, scoring, with_w): the awkward CPU shapes every top-k kernel test runs
TOPK_CASES = [
    (1, 1, 1, 1, 32, 4, "dot", False),        # one slot, k larger than the context
    (2, 1, 63, 1, 32, 8, "dot", False),
    (2, 1, 200, 3, 32, 300, "relu", True),    # k larger than every context
    (3, 1, 1000, 3, 64, 1, "dot", True),      # k = 1
    (2, 3, 1000, 1, 32, 100, "relu", False),  # several queries per sequence
    (2, 1, 1000, 3, 24, 257, "dot", True),    # Di and k no power of 2
]


@pytest.fixture
def workspace_left_clean():
    """After the test: the top-k workspace (and every other zero-between-launches buffer) is zero
    again (each call cleans what it used, so no memset is launched; a row left dirty would corrupt
    the next call's histograms)."""
    from clsa.ops.attention import triton_decode

    yield
    if any(t.is_cuda for t in triton_decode._COUNTERS.values()):
        torch.cuda.synchronize()
    dirty = {k: int(t.count_nonzero()) for k, t in triton_decode._COUNTERS.items() if t.any()}
    assert not dirty, f"zero-between-launches buffers left non-zero entries: {dirty}"
