"""Cached decoding, chunked prefill and early exit all equal one full forward."""

import pytest
import torch

from tests.model.helpers import ALL, build, incremental_logits, tokens


@pytest.mark.parametrize("variant", ALL)
@pytest.mark.parametrize("prefill", [1, 7])
def test_token_by_token_decode_equals_full_forward(variant, prefill):
    m = build(variant)
    ids = tokens(2, 23)  # 23 > top_k = 6 and > window = 8: sparsity and the ring buffer both matter
    full = m(ids, use_cache=False).logits
    torch.testing.assert_close(incremental_logits(m, ids, prefill), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_per_layer_gather_decodes_the_same_tokens(backend):
    # decode_gather="per_layer": every cross layer gathers its selected rows inside its own
    # kernel (rotary fused into its query load) instead of reading one compact buffer
    from clsa import ops
    m = build("clsa")
    ids = tokens(2, 23)
    full = m(ids, use_cache=False).logits
    with ops.use_backend(backend):
        m.config.decode_gather = "once"
        once = incremental_logits(m, ids, 7)
        m.config.decode_gather = "per_layer"
        per_layer = incremental_logits(m, ids, 7)
    torch.testing.assert_close(per_layer, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_layer, once, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B, mode, gathers", [(1, "auto", 1), (2, "auto", 0), (2, "once", 1),
                                               (1, "per_layer", 0)])
def test_decode_gather_modes(monkeypatch, B, mode, gathers):
    # "auto" gathers one compact buffer at batch 1 and lets every layer gather above it
    from clsa import ops
    from clsa.model import backbone
    m = build("clsa", decode_gather=mode)
    ids = tokens(B, 12)
    cache = m.new_cache(B)
    m(ids[:, :11], cache=cache)
    calls = []
    real = ops.gather_kv
    monkeypatch.setattr(backbone.ops, "gather_kv", lambda *a: calls.append(1) or real(*a))
    m(ids[:, 11:], cache=cache)
    assert len(calls) == gathers


@pytest.mark.parametrize("variant", ALL)
def test_multi_token_steps_equal_full_forward(variant):
    m = build(variant)
    ids = tokens(2, 30)
    full = m(ids, use_cache=False).logits
    torch.testing.assert_close(incremental_logits(m, ids, 5, step=4), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ALL)
def test_chunked_prefill_with_early_exit_equals_full_forward(variant):
    m = build(variant, self_decoder_chunk=5)
    ids = tokens(2, 23)
    full = m(ids, use_cache=False).logits
    cache = m.new_cache(2)
    last = m(ids, cache=cache, logits_to_keep=3).logits
    assert last.shape[1] == 3
    torch.testing.assert_close(last, full[:, -3:], rtol=1e-5, atol=1e-5)
    nxt = tokens(2, 1, seed=9)
    ref = m(torch.cat([ids, nxt], 1), use_cache=False).logits[:, -1:]
    torch.testing.assert_close(m(nxt, cache=cache).logits, ref, rtol=1e-5, atol=1e-5)


def test_yoco_early_exit_skips_the_cross_decoder_for_prompt_tokens():
    m = build("clsa")
    calls = []
    for blk in m.model.cross_layers:
        blk.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[1]))
    m(tokens(1, 20), use_cache=True, logits_to_keep=1)
    assert calls == [1] * m.config.num_cross_layers


def test_static_cache_equals_growing_cache():
    m = build("clsa")
    ids = tokens(2, 19)
    full = m(ids, use_cache=False).logits
    cache = m.new_cache(2, max_length=32)
    outs = [m(ids[:, :4], cache=cache).logits] + [m(ids[:, t:t + 1], cache=cache).logits for t in range(4, 19)]
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cache is full"):
        m(tokens(2, 20), cache=cache)


@pytest.mark.parametrize("variant, want", [
    ("yoco", [False, True, True, True]),
    ("clsa", [False, True, True, True]),
    ("indexcache", [False, True, False, True]),  # a new index every 2 cross layers
    ("yoco-dsa", [False, False, False, False]),  # every layer selects anew
])
@pytest.mark.parametrize("B", [1, 2])
def test_kv_ready_only_after_the_layer_that_indexes(monkeypatch, variant, want, B):
    # kv_ready lets a cross layer's attention read its K/V (and index) before the launch right
    # before it has finished: only sound when they were written before the previous layer's
    # attention, never right after a new index or gather. The self-decoder's layers decode through
    # ring_attention (the ring write in the same launch), which takes no such hint.
    from clsa.model import attention as attn_mod
    m = build(variant, num_hidden_layers=8)
    ids = tokens(B, 12)
    cache = m.new_cache(B)
    m(ids[:, :11], cache=cache)
    seen = []
    for name in ("attention", "sparse_attention", "ring_attention"):
        real = getattr(attn_mod.ops, name)
        monkeypatch.setattr(attn_mod.ops, name, lambda *a, _r=real, _n=name, **k:
                            seen.append((_n, k.get("kv_ready"))) or _r(*a, **k))
    m(ids[:, 11:], cache=cache)
    cross = "sparse_attention" if B > 1 and variant != "yoco" else "attention"
    assert seen == [("ring_attention", None)] * 4 + [(cross, r) for r in want]
