"""Stock (torch backend) fast paths equal the reference."""

import torch

from clsa.testing import assert_close


def test_stock_attention_causal_fast_path_equals_reference():
    from clsa.ops.attention import naive, stock
    q, k, v = torch.randn(2, 9, 4, 8), torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)
    pos = torch.arange(9).expand(2, 9)
    zero = torch.zeros(2, dtype=torch.long)
    assert stock.is_plain_causal(pos, pos.clone(), zero, None)
    assert not stock.is_plain_causal(pos, pos, torch.tensor([0, 1]), None)
    assert not stock.is_plain_causal(pos, pos, zero, 4)
    assert_close(stock.attention(q, k, v, pos, pos.clone(), zero), naive.attention(q, k, v, pos, pos, zero))
