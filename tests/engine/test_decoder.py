"""The static decoder equals HF generate() (CPU, eager) and, on a GPU, the graph path equals the
eager path and the Triton backend equals the reference backend token for token."""

import pytest
import torch

from clsa import ops
from clsa.engine import Decoder
from tests.model.helpers import ALL, build, tokens


@pytest.mark.parametrize("variant", ALL)
def test_static_decoder_equals_generate(variant):
    m = build(variant)
    prompt = tokens(2, 11)
    mask = torch.ones_like(prompt)
    mask[0, :3] = 0
    ref = m.generate(prompt, attention_mask=mask, max_new_tokens=10, do_sample=False)
    dec = Decoder(m, 2, max_length=24)
    assert torch.equal(dec.generate(prompt, 10, attention_mask=mask), ref)
    dec.reset()
    assert torch.equal(dec.generate(prompt, 10, attention_mask=mask), ref)


def test_decoder_errors():
    m = build("clsa")
    dec = Decoder(m, 1, max_length=12)
    with pytest.raises(ValueError, match="step before prefill"):
        dec.step(torch.zeros(1, dtype=torch.long))
    dec.prefill(tokens(1, 11))
    dec.step(torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="cache is full"):
        dec.step(torch.zeros(1, dtype=torch.long))


@pytest.mark.gpu
@pytest.mark.parametrize("variant, key_bits", [(v, 16) for v in ALL]
                         + [("clsa", 8), ("yoco-dsa", 8)])  # 8-bit indexer key cache too
def test_gpu_graph_triton_decoding_equals_reference(variant, key_bits):
    m = build(variant, index_top_k=16, indexer_key_bits=key_bits).cuda()
    prompt = tokens(3, 70).cuda()
    mask = torch.ones_like(prompt)
    mask[1, :9] = 0
    with ops.use_backend("naive"):
        ref = Decoder(m, 3, 128, cuda_graph=False).generate(prompt, 24, attention_mask=mask)
    with ops.use_backend("triton"):
        eager = Decoder(m, 3, 128, cuda_graph=False).generate(prompt, 24, attention_mask=mask)
        graph = Decoder(m, 3, 128, cuda_graph=True).generate(prompt, 24, attention_mask=mask)
    assert torch.equal(graph, eager)
    assert torch.equal(eager, ref)


@pytest.mark.parametrize("variant", ALL)
def test_rerunning_a_step_at_the_same_position_is_idempotent(variant):
    """Graph warm-ups and benchmark replays re-run a step at one position: same logits each time."""
    m = build(variant)
    dec = Decoder(m, 2, max_length=40)
    dec.prefill(tokens(2, 30))
    dec._tok.copy_(tokens(2, 1, seed=5))
    first = dec._body()
    for _ in range(2):
        dec.cache.pos.sub_(1)
        dec.cache.seen -= 1
        torch.testing.assert_close(dec._body(), first, rtol=0, atol=0)



def _prefill_then_step(m, prompt, mask, backend, max_length):
    """Logits of the prompt's last 2 positions (chunked prefill) and of one more decode step."""
    with ops.use_backend(backend), torch.no_grad():
        cache = m.new_cache(prompt.shape[0], max_length=max_length)
        last = m(prompt, attention_mask=mask, cache=cache, logits_to_keep=2).logits
        grown = torch.cat((mask, torch.ones_like(mask[:, :1])), 1)
        return torch.cat((last, m(prompt[:, -1:], attention_mask=grown, cache=cache).logits), 1)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("variant", ["yoco", "clsa", "swa"])
def test_chunked_prefill_through_flex_window_equals_reference(variant, monkeypatch):
    # the model's ring layout reaches FlexAttention (forced on; eager on CPU) and agrees with the
    # reference: chunks of 600 over a 40-slot ring, one row left-padded past the first chunk
    from clsa.ops.attention import flex_window, stock
    from clsa.testing import assert_close
    calls = []
    real = flex_window.window_prefill
    monkeypatch.setattr(flex_window, "window_prefill", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(stock, "FLEX_PREFILL", "on")
    # the model states the ring layout, so nothing checks it on the values (a host sync)
    monkeypatch.setattr(stock, "ring_prefix", lambda *a: pytest.fail("layout checked on the values"))
    m = build(variant, sliding_window=40, self_decoder_chunk=600, index_top_k=16,
              max_position_embeddings=2048)
    prompt = tokens(2, 1300)
    mask = torch.ones_like(prompt)
    mask[1, :650] = 0
    ref = _prefill_then_step(m, prompt, mask, "naive", 1400)
    assert_close(_prefill_then_step(m, prompt, mask, "torch", 1400), ref, fp32_tol=1e-4)
    assert calls  # the torch backend's windowed prefill went through flex_window


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["yoco", "clsa", "swa"])
def test_gpu_long_chunked_prefill_with_flex_window_equals_reference(variant):
    # prompts long enough that the Triton backend's windowed prefill takes compiled FlexAttention
    # (chunks > 1024 queries over the ring), one row left-padded, chunks of unequal length; fp32
    from clsa.ops.attention import stock
    from clsa.testing import assert_close
    assert stock.FLEX_PREFILL == "auto"
    m = build(variant, sliding_window=96, self_decoder_chunk=1536, index_top_k=32, head_dim=16,
              max_position_embeddings=8192).cuda()  # compiled flex needs head dim >= 16
    prompt = tokens(2, 3500).cuda()
    mask = torch.ones_like(prompt)
    mask[1, :700] = 0
    ref = _prefill_then_step(m, prompt, mask, "naive", 3600)
    assert_close(_prefill_then_step(m, prompt, mask, "triton", 3600), ref, fp32_tol=1e-3)
