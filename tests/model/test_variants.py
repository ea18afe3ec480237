"""Relations between the five variants, and what the shared index must guarantee."""

import pytest
import torch

from clsa import ops
from tests.model.helpers import SPARSE, build, tokens


@pytest.mark.parametrize("variant", ["clsa", "yoco-dsa", "indexcache"])
def test_sparse_with_k_covering_the_context_equals_yoco_exactly(variant):
    yoco = build("yoco", index_top_k=64)
    sparse = build(variant, index_top_k=64)
    missing, unexpected = sparse.load_state_dict(yoco.state_dict(), strict=False)
    assert not unexpected and all("indexer" in k for k in missing)
    ids = tokens(2, 40)
    assert torch.equal(sparse(ids, use_cache=False).logits, yoco(ids, use_cache=False).logits)


def test_sparse_with_small_k_differs_from_yoco():
    yoco, clsa = build("yoco"), build("clsa")
    clsa.load_state_dict(yoco.state_dict(), strict=False)
    ids = tokens(2, 40)
    assert not torch.allclose(clsa(ids, use_cache=False).logits, yoco(ids, use_cache=False).logits)


def test_indexcache_with_g1_equals_yoco_dsa():
    dsa = build("yoco-dsa")
    ic = build("indexcache", index_refresh_every=1)
    ic.load_state_dict(dsa.state_dict(), strict=True)
    ids = tokens(2, 30)
    assert torch.equal(ic(ids, use_cache=False).logits, dsa(ids, use_cache=False).logits)


def test_clsa_equals_indexcache_refreshing_never():
    """clsa's one indexer reads the self-decoder output: cross layer 0's input, where an
    indexcache indexer with G >= #cross layers sits. Same weights -> same logits."""
    clsa = build("clsa")
    ic = build("indexcache", index_refresh_every=clsa.config.num_cross_layers)
    sd = {k.replace("model.indexer.", "model.cross_layers.0.indexer."): v for k, v in clsa.state_dict().items()}
    ic.load_state_dict(sd, strict=True)
    ids = tokens(2, 30)
    torch.testing.assert_close(ic(ids, use_cache=False).logits, clsa(ids, use_cache=False).logits,
                               rtol=0, atol=0)


def _capture(model):
    """Count indexer calls and record what each cross layer was handed."""
    calls, handed = [], []
    for ix in model.model.indexers().values():
        ix.register_forward_hook(lambda *a: calls.append(1))
    for blk in model.model.cross_layers:
        blk.register_forward_pre_hook(
            lambda mod, args, kwargs: handed.append(kwargs.get("idx") if kwargs.get("gathered") is None
                                                    else kwargs["gathered"]), with_kwargs=True)
    return calls, handed


@pytest.mark.parametrize("decode", [False, True])
def test_clsa_indexes_once_and_every_layer_gets_the_same_index(decode):
    m = build("clsa")
    ids = tokens(2, 20)
    cache = m.new_cache(2) if decode else None
    if decode:
        m(ids[:, :19], cache=cache)
    calls, handed = _capture(m)
    m(ids[:, 19:] if decode else ids, cache=cache, use_cache=decode)
    assert len(calls) == 1
    assert len(handed) == m.config.num_cross_layers
    assert all(h is handed[0] for h in handed) and handed[0] is not None


def test_indexcache_and_dsa_index_per_group_and_per_layer():
    n = build("clsa").config.num_cross_layers
    for variant, g, expected in (("yoco-dsa", 1, n), ("indexcache", 2, (n + 1) // 2)):
        m = build(variant, index_refresh_every=g)
        calls, handed = _capture(m)
        m(tokens(1, 20), use_cache=False)
        assert len(calls) == expected == m.model.last_routing.indexer_calls


@pytest.mark.parametrize("variant", SPARSE)
def test_selected_indices_are_unique_causal_in_range_and_padded_only_when_short(variant):
    m = build(variant)
    B, T, K = 3, 17, m.config.index_top_k
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :4] = 0  # left padding: 4 pads
    m(tokens(B, T), attention_mask=mask, use_cache=False)
    kv_start = torch.tensor([0, 4, 0])
    for idx in m.model.last_routing.indices.values():
        assert idx.shape == (B, T, K) and idx.dtype == torch.int32
        for b in range(B):
            for t in range(T):
                row = idx[b, t]
                valid = row[row >= 0]
                visible = max(t - int(kv_start[b]) + 1, 0)
                assert len(valid) == min(K, visible)
                assert (row[len(valid):] == -1).all(), "-1 only after the valid entries"
                assert len(set(valid.tolist())) == len(valid)
                assert ((valid >= kv_start[b]) & (valid <= t)).all()


@pytest.mark.parametrize("variant", ("dense", "yoco", "clsa", "indexcache"))
def test_changing_a_token_never_changes_earlier_logits(variant):
    m = build(variant)
    ids = tokens(1, 25)
    ref = m(ids, use_cache=False).logits
    for t in (0, 9, 24):
        other = ids.clone()
        other[0, t] = (other[0, t] + 1) % 256
        out = m(other, use_cache=False).logits
        assert torch.equal(out[:, :t], ref[:, :t])
        assert not torch.equal(out[:, t:], ref[:, t:])


def test_topk_op_selects_the_highest_scores():
    q, k = torch.randn(2, 5, 1, 8), torch.randn(2, 50, 8)
    q_pos = torch.tensor([[10, 20, 30, 40, 49]] * 2)
    kv_start = torch.tensor([0, 3])
    idx = ops.indexer_topk(q, k, None, q_pos, kv_start, 7)
    s = ops.indexer_scores(q, k, None, q_pos, kv_start)
    for b in range(2):
        for t in range(5):
            chosen = s[b, t, idx[b, t].long()]
            rest = s[b, t].clone()
            rest[idx[b, t].long()] = float("-inf")
            assert chosen.min() >= rest.max()


def test_swa_equals_dense_when_the_window_covers_the_context():
    ids = tokens(2, 30)
    dense, swa = build("dense"), build("swa", sliding_window=30)
    swa.load_state_dict(dense.state_dict())
    assert torch.equal(swa(ids).logits, dense(ids).logits)


def test_swa_sees_no_further_back_than_layers_times_window():
    # debug: 4 layers, window 8 -> receptive field 4 * 7 = 28 tokens back; dense sees everything
    ids = tokens(1, 60)
    other = ids.clone()
    other[0, 2] = (ids[0, 2] + 1) % 256
    swa, dense = build("swa"), build("dense")
    assert torch.equal(swa(ids).logits[0, 31:], swa(other).logits[0, 31:])
    assert not torch.allclose(swa(ids).logits[0, 2:30], swa(other).logits[0, 2:30])
    assert not torch.allclose(dense(ids).logits[0, 31:], dense(other).logits[0, 31:])
