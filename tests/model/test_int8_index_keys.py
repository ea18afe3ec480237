"""The 8-bit indexer key cache (indexer_key_bits=8): cached decoding equals the full forward run
with the same quantized keys; the cache layout, its bytes and beam reordering; the Triton backend
decodes the reference's tokens (CPU interpreter; on a GPU, also through a CUDA graph)."""

import pytest
import torch

from clsa import CLSAConfig, ops
from clsa.engine import Decoder
from clsa.model.cache import IndexKeys, QuantKeys
from clsa.model.memory import cache_report
from clsa.ops.indexer_topk.quant import dequantize_keys, quantize_keys
from tests.model.helpers import SPARSE, build, incremental_logits, tokens


def _full_forward_with_quantized_keys(m, ids, monkeypatch):
    """Logits of the full forward (no cache) with every indexer key replaced by its 8-bit round
    trip: the keys a cached run reads (without a cache the model keeps them unquantized)."""
    with monkeypatch.context() as mp:
        for ix in m.model.indexers().values():
            mp.setattr(ix, "keys",
                       lambda h, rope, f=ix.keys: dequantize_keys(*quantize_keys(f(h, rope))))
        return m(ids, use_cache=False).logits


@pytest.mark.parametrize("variant", SPARSE)
@pytest.mark.parametrize("prefill", [1, 7])
def test_cached_decode_equals_full_forward_with_quantized_keys(variant, prefill, monkeypatch):
    m = build(variant, indexer_key_bits=8)
    ids = tokens(2, 23)  # 23 > top_k = 6: the selection matters
    full = _full_forward_with_quantized_keys(m, ids, monkeypatch)
    torch.testing.assert_close(incremental_logits(m, ids, prefill), full, rtol=1e-5, atol=1e-5)


def test_static_cache_with_int8_keys_equals_full_forward(monkeypatch):
    m = build("clsa", indexer_key_bits=8)
    ids = tokens(2, 19)
    full = _full_forward_with_quantized_keys(m, ids, monkeypatch)
    cache = m.new_cache(2, max_length=32)  # static: written with index_copy_, as in a CUDA graph
    outs = [m(ids[:, :4], cache=cache).logits] + [m(ids[:, t:t + 1], cache=cache).logits
                                                  for t in range(4, 19)]
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["clsa", "yoco-dsa"])
def test_int8_cache_layout_and_bytes(variant):
    m = build(variant, indexer_key_bits=8)
    cfg = m.config
    cache = m.new_cache(2, max_length=100)
    assert cache.index_keys and all(isinstance(x, QuantKeys) for x in cache.index_keys.values())
    keys = next(iter(cache.index_keys.values()))
    assert keys.k.buf.dtype == torch.int8 and keys.k.buf.shape == (2, 100, cfg.indexer_head_dim)
    assert keys.scale.buf.dtype == torch.float32 and keys.scale.buf.shape == (2, 100)
    allocated = sum(b.numel() * b.element_size() for b in cache.buffers())
    assert allocated == 2 * cache_report(cfg, dtype_bytes=4).per_sequence(100)
    # what the indexer reads back: int8 keys and their scales
    i = next(iter(cache.index_keys))
    out = cache.write_index_keys(i, torch.randn(2, 3, cfg.indexer_head_dim), torch.arange(3).expand(2, 3))
    assert isinstance(out, IndexKeys) and out.k.dtype == torch.int8 and out.scale.shape == (2, 100)


def test_16bit_cache_returns_keys_without_scale():
    m = build("clsa")
    cache = m.new_cache(2)
    out = cache.write_index_keys(0, torch.randn(2, 3, m.config.indexer_head_dim),
                                 torch.arange(3).expand(2, 3))
    assert out.scale is None and out.k.dtype == torch.float32 and out.k.shape == (2, 3, 8)


def test_yoco_3b_int8_key_bytes():
    r16 = cache_report(CLSAConfig.from_name("yoco-3b", attention_variant="clsa"))
    r8 = cache_report(CLSAConfig.from_name("yoco-3b", attention_variant="clsa", indexer_key_bits=8))
    assert r16.indexer_per_token == 128 * 2 and r8.indexer_per_token == 128 + 4
    assert r8.per_token == 4 * 1024 + 132
    dsa = CLSAConfig.from_name("yoco-3b", attention_variant="yoco-dsa", indexer_key_bits=8)
    assert cache_report(dsa).indexer_per_token == 13 * 132


def test_reorder_cache_reorders_int8_keys_and_scales():
    m = build("clsa", indexer_key_bits=8)
    cache = m.new_cache(3)
    m(tokens(3, 9), cache=cache)
    keys = cache.index_keys[0]
    k, s = keys.k.buf.clone(), keys.scale.buf.clone()
    assert not torch.equal(s[0], s[1])
    beam = torch.tensor([2, 0, 0])
    cache.reorder_cache(beam)
    assert torch.equal(keys.k.buf, k[beam]) and torch.equal(keys.scale.buf, s[beam])


def test_triton_decoding_with_int8_keys_equals_reference():
    # the Triton top-k kernel under the CPU interpreter, every other op too
    m = build("clsa", indexer_key_bits=8)
    prompt = tokens(2, 20)
    mask = torch.ones_like(prompt)
    mask[1, :3] = 0
    out = {}
    for backend in ("naive", "triton"):
        with ops.use_backend(backend):
            out[backend] = Decoder(m, 2, 32).generate(prompt, 8, attention_mask=mask)
    assert torch.equal(out["triton"], out["naive"])
