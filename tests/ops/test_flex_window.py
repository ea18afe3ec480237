"""FlexAttention sliding-window prefill (flex_window.py) equals the reference on the ring layout."""

import pytest as _pytest

# CPU runs FlexAttention eagerly (mask function only, no block skipping): the block list is
# checked by test_band_blocks_cover_every_visible_key, the compiled path by the GPU test.
pytestmark = _pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

import pytest
import torch

from clsa.ops.attention import flex_window, naive, stock
from clsa.testing import assert_close, lowp_attention


def _ring_case(B, T, W, hq, hkv, d, start, dtype=torch.float32, device="cpu"):
    """W ring rows in ring order before T new slots at positions start..start+T-1: the ring holds
    the W slots before ``start`` (-1 where none), plus one empty row when W > 2."""
    old = torch.arange(start - W, start)
    ring = torch.where(old >= 0, old, -1)[torch.randperm(W)] if W else old
    if W > 2:
        ring[1] = -1
    pos = torch.arange(start, start + T)
    k_pos = torch.cat((ring, pos)).expand(B, W + T).to(device)
    q = torch.randn(B, T, hq, d, dtype=dtype, device=device)
    k = torch.randn(B, W + T, hkv, d, dtype=dtype, device=device)
    v = torch.randn(B, W + T, hkv, d, dtype=dtype, device=device)
    return q, k, v, pos.expand(B, T).to(device), k_pos


@pytest.mark.parametrize("T,W,window,start", [
    (1, 5, 6, 5), (70, 5, 6, 5), (129, 0, 40, 0), (200, 64, 64, 300), (300, 64, 130, 64),
    (257, 16, 1, 16), (140, 130, 300, 130)])
def test_window_prefill_equals_reference(T, W, window, start):
    # one row left-padded past the ring: its early queries see nothing (zeros)
    q, k, v, q_pos, k_pos = _ring_case(2, T, W, 4, 2, 8, start)
    kv_start = torch.tensor([0, start + min(T - 1, 30)])
    out = flex_window.window_prefill(q, k, v, q_pos, k_pos, kv_start, window, 0.3)
    assert_close(out, naive.attention(q, k, v, q_pos, k_pos, kv_start, window, 0.3))


@pytest.mark.parametrize("T,W,window", [(300, 64, 130), (1000, 200, 200), (129, 7, 500), (64, 0, 3)])
def test_band_blocks_cover_every_visible_key(T, W, window):
    # the block list must contain every (query, key) pair the exact rule allows, for any ring order
    _, _, _, q_pos, k_pos = _ring_case(1, T, W, 1, 1, 1, start=W)
    exact = naive.visible_mask(q_pos, k_pos, torch.zeros(1, dtype=torch.long), window)[0]
    num, idx = flex_window.band_blocks(T, W, window, torch.device("cpu"), 16)
    listed = torch.zeros(-(-T // 16), -(-(W + T) // 16), dtype=torch.bool)
    for i in range(listed.shape[0]):
        listed[i, idx[0, 0, i, :num[0, 0, i]].long()] = True
    pad = torch.zeros(listed.shape[0] * 16, listed.shape[1] * 16, dtype=torch.bool)
    pad[:T, :W + T] = exact
    need = pad.view(listed.shape[0], 16, listed.shape[1], 16).any(3).any(1)
    assert not (need & ~listed).any()
    # and it is a band, not everything: at most the ring plus window/16 + 2 blocks per query block
    assert int(num.max()) <= -(-W // 16) + window // 16 + 2


def test_stock_attention_routes_ring_prefill_to_flex(monkeypatch):
    q, k, v, q_pos, k_pos = _ring_case(2, 90, 5, 4, 2, 8, 5)
    kv_start = torch.tensor([0, 40])
    ref = naive.attention(q, k, v, q_pos, k_pos, kv_start, 6)
    calls = []
    real = flex_window.window_prefill
    monkeypatch.setattr(flex_window, "window_prefill", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(stock, "FLEX_PREFILL", "on")
    assert_close(stock.attention(q, k, v, q_pos, k_pos, kv_start, 6, query_chunk=16), ref)
    monkeypatch.setattr(stock, "FLEX_PREFILL", "off")
    assert_close(stock.attention(q, k, v, q_pos, k_pos, kv_start, 6, query_chunk=16), ref)
    assert calls == [1]
    # the caller's layout hint replaces the check on the values (a host sync), on either path
    monkeypatch.setattr(stock, "ring_prefix", lambda *a: pytest.fail("layout checked on the values"))
    for flex in ("on", "off"):
        monkeypatch.setattr(stock, "FLEX_PREFILL", flex)
        assert_close(stock.attention(q, k, v, q_pos, k_pos, kv_start, 6, query_chunk=16, ring=5), ref)
    assert calls == [1, 1]


def test_window_prefill_rejects_a_key_layout_shorter_than_the_queries():
    q, k, v, q_pos, k_pos = _ring_case(1, 10, 0, 2, 1, 8, 0)
    with pytest.raises(ValueError, match="window_prefill needs"):
        flex_window.window_prefill(q, k[:, :5], v[:, :5], q_pos, k_pos[:, :5], torch.zeros(1), 4)


@pytest.mark.gpu
@pytest.mark.parametrize("T,W,window", [(2048, 1024, 1024), (3000, 1024, 1024), (1000, 0, 256)])
def test_window_prefill_gpu_bf16(T, W, window):
    # compiled FlexAttention (block skipping on) against the fp32 reference, the 2x rule's budget
    # from the same attention in bf16 PyTorch; row 1 is left-padded into the chunk (zero rows)
    q, k, v, q_pos, k_pos = _ring_case(2, T, W, 24, 8, 128, W, torch.bfloat16, "cuda")
    kv_start = torch.tensor([0, W + 100], device="cuda")
    out = flex_window.window_prefill(q, k, v, q_pos, k_pos, kv_start, window, 128 ** -0.5)
    ref = naive.attention(q.float(), k.float(), v.float(), q_pos, k_pos, kv_start, window, 128 ** -0.5)
    mask = naive.visible_mask(q_pos, k_pos, kv_start, window)
    assert_close(out.float(), ref, low_precision=lowp_attention(q, k, v, mask, 128 ** -0.5).float())


def test_auto_mode_leaves_head_dims_below_16_to_sdpa():
    # compiled FlexAttention cannot take head dim 8: "auto" must not send it there
    q = torch.zeros(1, 4, 2, 8)
    assert not flex_window.supported(q) and flex_window.supported(torch.zeros(1, 4, 2, 16))
