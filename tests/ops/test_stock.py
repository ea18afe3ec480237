"""Stock (torch backend) fast paths equal the reference."""

import pytest
import torch

from clsa.testing import assert_close


def test_stock_attention_causal_fast_path_equals_reference():
    from clsa.ops.attention import naive, stock
    q, k, v = torch.randn(2, 9, 4, 8), torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)
    pos = torch.arange(9).expand(2, 9)
    zero = torch.zeros(2, dtype=torch.long)
    assert stock.plain_causal_len(pos, pos.clone(), zero, None) == 9
    assert stock.plain_causal_len(pos, pos, torch.tensor([0, 1]), None) is None
    assert stock.plain_causal_len(pos, pos, zero, 4) is None
    assert_close(stock.attention(q, k, v, pos, pos.clone(), zero), naive.attention(q, k, v, pos, pos, zero))


def test_stock_causal_fast_path_over_a_static_cache_tail():
    # prefill into a static cache of 13 slots: 9 written, the 4 unwritten tail slots are in the
    # future of every query; the fast path attends to the first 9 slots only
    from clsa.ops.attention import naive, stock
    q, k, v = torch.randn(2, 9, 4, 8), torch.randn(2, 13, 2, 8), torch.randn(2, 13, 2, 8)
    pos, slots = torch.arange(9).expand(2, 9), torch.arange(13).expand(2, 13)
    zero = torch.zeros(2, dtype=torch.long)
    assert stock.plain_causal_len(pos, slots, zero, None) == 9
    assert_close(stock.attention(q, k, v, pos, slots, zero), naive.attention(q, k, v, pos, slots, zero))
    # a tail slot holding a past position, or queries not starting at 0: not plain causal
    bad = slots.clone()
    bad[1, 11] = 3
    assert stock.plain_causal_len(pos, bad, zero, None) is None
    assert stock.plain_causal_len(pos + 4, slots, zero, None) is None
    assert_close(stock.attention(q, k, v, pos + 4, slots, zero), naive.attention(q, k, v, pos + 4, slots, zero))


@pytest.mark.parametrize("window", [1, 6, 16, 17, 40, 100])
def test_stock_windowed_prefill_trims_keys_per_query_chunk(window):
    # 70 queries in chunks of 16 over a ring of 5 earlier slots + their own, one row left-padded:
    # each chunk reads only the key slots its window reaches, found from the ring layout alone
    from clsa.ops.attention import naive, stock
    ring = torch.tensor([[-1, 1, 4, 2, 3]]).expand(2, 5)  # one empty slot, ring order
    pos = torch.arange(5, 75).expand(2, 70)
    k_pos = torch.cat((ring, pos), 1)
    q, k, v = torch.randn(2, 70, 4, 8), torch.randn(2, 75, 2, 8), torch.randn(2, 75, 2, 8)
    kv_start = torch.tensor([0, 30])
    assert stock.ring_prefix(pos, k_pos, window) == 5
    assert_close(stock.attention(q, k, v, pos, k_pos, kv_start, window, query_chunk=16),
                 naive.attention(q, k, v, pos, k_pos, kv_start, window))
    # Another layout (the new slots not last): the scanning trim, same answer
    perm = torch.cat((torch.arange(5, 75), torch.arange(5)))
    assert stock.ring_prefix(pos, k_pos[:, perm], window) is None
    assert_close(stock.attention(q, k[:, perm], v[:, perm], pos, k_pos[:, perm], kv_start, window,
                                 query_chunk=16),
                 naive.attention(q, k, v, pos, k_pos, kv_start, window))
