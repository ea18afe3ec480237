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
