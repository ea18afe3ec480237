"""Padding, generate(), save/load (incl. trust_remote_code in a fresh process), bad input."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from clsa import CLSAConfig
from clsa.model import CLSAForCausalLM
from tests.model.helpers import ALL, build, incremental_logits, tokens


@pytest.mark.parametrize("variant", ALL)
def test_left_padded_batch_equals_each_sequence_alone(variant):
    m = build(variant)
    lens = [21, 13, 17]
    T = max(lens)
    seqs = [tokens(1, n, seed=10 + i) for i, n in enumerate(lens)]
    ids = torch.zeros(len(lens), T, dtype=torch.long)
    mask = torch.zeros(len(lens), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - s.shape[1]:] = s[0]
        mask[i, T - s.shape[1]:] = 1
    full = m(ids, attention_mask=mask, use_cache=False).logits
    inc = incremental_logits(m, ids, 15, mask=mask)
    for i, s in enumerate(seqs):
        alone = m(s, use_cache=False).logits[0]
        torch.testing.assert_close(full[i, T - s.shape[1]:], alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(inc[i, T - s.shape[1]:], alone, rtol=1e-5, atol=1e-5)


def test_right_padding_is_fine_without_cache_and_refused_with_one():
    m = build("clsa")
    ids = tokens(2, 12)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    out = m(ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(out[1, :8], m(ids[1:, :8], use_cache=False).logits[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="left"):
        m(ids, attention_mask=mask, use_cache=True)


@pytest.mark.parametrize("variant", ALL)
def test_generate_equals_a_hand_written_greedy_loop(variant):
    m = build(variant)
    prompt = tokens(2, 9)
    out = m.generate(prompt, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(prompt))
    ids = prompt
    for _ in range(12):
        nxt = m(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    assert torch.equal(out, ids)


def test_generate_beam_search_and_sampling_run_with_the_model_cache():
    m = build("clsa")
    prompt = tokens(2, 9)
    beams = m.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False)
    assert beams.shape == (2, 15)
    torch.manual_seed(0)
    a = m.generate(prompt, max_new_tokens=6, do_sample=True, top_k=20, temperature=0.8)
    torch.manual_seed(0)
    b = m.generate(prompt, max_new_tokens=6, do_sample=True, top_k=20, temperature=0.8)
    assert torch.equal(a, b) and a.shape == (2, 15)


@pytest.mark.parametrize("variant", ("dense", "clsa", "indexcache"))
def test_save_and_load_round_trip(tmp_path, variant):
    m = build(variant)
    m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = CLSAForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.attention_variant == variant
    ids = tokens(2, 20)
    assert torch.equal(loaded(ids, use_cache=False).logits, m(ids, use_cache=False).logits)


def test_fresh_process_loads_with_trust_remote_code_and_no_network(tmp_path):
    m = build("clsa")
    m.save_pretrained(tmp_path)
    ids = tokens(1, 16)
    torch.save({"ids": ids, "logits": m(ids, use_cache=False).logits}, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        e = torch.load({str(tmp_path / "expected.pt")!r})
        assert type(m).__name__ == "CLSAForCausalLM", type(m)
        assert torch.equal(m(e["ids"], use_cache=False).logits, e["logits"])
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_bad_input_gives_clear_errors():
    m = build("clsa")
    with pytest.raises(ValueError, match="empty input"):
        m(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        m(torch.tensor([[1, 2, 256]]))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        m(torch.tensor([[1, -3]]))
    with pytest.raises(TypeError, match="integer tensor"):
        m(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        m(torch.zeros(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must be"):
        m(tokens(1, 5), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no real token"):
        m(tokens(2, 5), attention_mask=torch.tensor([[1] * 5, [0] * 5]))
    with pytest.raises(ValueError, match="zeros between"):
        m(tokens(1, 5), attention_mask=torch.tensor([[1, 0, 1, 1, 1]]))
    with pytest.raises(ValueError, match="inputs_embeds"):
        m(inputs_embeds=torch.zeros(1, 3, 32))
    cache = m.new_cache(2)
    with pytest.raises(ValueError, match="cache holds 2 sequences"):
        m(tokens(3, 4), cache=cache)


@pytest.mark.parametrize("field,value,match", [
    ("hidden_size", 0, "hidden_size"), ("attention_variant", "nsa", "attention_variant"),
    ("num_key_value_heads", 3, "divisor"), ("num_self_layers", 4, "num_self_layers"),
    ("index_top_k", -1, "index_top_k"), ("indexer_scoring", "cos", "indexer_scoring"),
    ("head_dim", 7, "even"), ("indexer_rope", "gptj", "indexer_rope"), ("sliding_window", 1.5, "sliding_window"),
    ("indexer_key_bits", 4, r"indexer_key_bits=4 is invalid: allowed one of \(16, 8\)"),
    ("indexer_key_bits", 8.0, "indexer_key_bits"),
])
def test_invalid_config_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        CLSAConfig.from_name("debug", **{field: value})


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        CLSAConfig.from_name("yoco-70b")
