"""Synthetic tasks: a parser recovers every answer, exact lengths, answer masks, seeding."""

import pytest
import torch

from clsa.train import (TASKS, ByteTokenizer, DataError, Document, Sample, check_answer,
                        make_sample, to_tokens)

TARGET = 700
CASES = [
    ("needle", {}),
    ("needle", {"depth": 0.0}),
    ("multi_needle", {}),
    ("multi_needle", {"ask": "all", "n_needles": 3}),
    ("mqar", {}),
    ("mqar", {"n_pairs": 8, "n_queries": 8, "digits": 3}),
    ("var_track", {}),
    ("var_track", {"hops": 1, "n_distractors": 0}),
]


def test_registry_lists_every_task():
    assert set(TASKS) == {"needle", "multi_needle", "mqar", "var_track"}


@pytest.mark.parametrize("use_docs", [False, True], ids=["pseudo", "docs"])
@pytest.mark.parametrize("task, kwargs", CASES)
def test_sample_is_correct_and_exact(task, kwargs, use_docs, tokenizer, small_docs):
    docs = small_docs if use_docs else None
    sample = make_sample(task, 11, TARGET, tokenizer, filler_docs=docs, **kwargs)
    assert sample.task == task and sample.answer
    assert check_answer(sample) == sample.answer
    ids, mask = to_tokens(sample, tokenizer, TARGET)
    assert ids.shape == mask.shape == (TARGET,)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    answer_ids = tokenizer.encode(sample.answer) + [tokenizer.eos_id]
    n = len(answer_ids)
    assert mask[-n:].all() and not mask[:-n].any()
    assert ids[mask].tolist() == answer_ids
    assert tokenizer.eos_id not in ids[:-1].tolist()
    prompt = tokenizer.decode(ids[:-n])
    assert prompt.endswith("Answer: ")
    assert check_answer(Sample(task, prompt, "")) == sample.answer
    if isinstance(tokenizer, ByteTokenizer):
        assert prompt == sample.prompt


@pytest.mark.parametrize("task", sorted(TASKS))
def test_same_seed_same_sample_other_seed_differs(task, small_docs):
    tok = ByteTokenizer()
    a = make_sample(task, 5, 400, tok, small_docs)
    b = make_sample(task, 5, 400, tok, small_docs)
    c = make_sample(task, 6, 400, tok, small_docs)
    assert (a.prompt, a.answer, a.meta) == (b.prompt, b.answer, b.meta)
    assert torch.equal(to_tokens(a, tok, 400).input_ids, to_tokens(b, tok, 400).input_ids)
    assert a.prompt != c.prompt and a.meta != c.meta


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("new_len", [450, 2000])
def test_to_tokens_refits_filler_to_other_lengths(task, new_len, tokenizer):
    sample = make_sample(task, 3, 900, tokenizer)
    ids, mask = to_tokens(sample, tokenizer, new_len)
    assert len(ids) == new_len
    assert check_answer(Sample(task, tokenizer.decode(ids[~mask]), "")) == sample.answer
    assert tokenizer.decode(ids[mask]) == sample.answer


def test_to_tokens_with_no_filler_at_all():
    tok = ByteTokenizer()
    tight = make_sample("needle", 0, 400, tok)
    fixed = 400 - sum(e - s for k, s, e in tight.meta["segments"] if k == "filler")
    sample = make_sample("needle", 0, fixed, tok)
    assert all(s == e for k, s, e in sample.meta["segments"] if k == "filler")
    assert len(to_tokens(sample, tok, fixed).input_ids) == fixed
    longer = to_tokens(sample, tok, fixed + 300)
    assert len(longer.input_ids) == fixed + 300
    assert longer.prompt_len == fixed + 300 - len(sample.answer) - 1


def test_needle_depth_places_the_fact():
    tok = ByteTokenizer()
    start = make_sample("needle", 1, 1000, tok, depth=0.0)
    end = make_sample("needle", 1, 1000, tok, depth=1.0)
    assert start.prompt.startswith("\nThe magic number for ")
    fact = f"The magic number for {end.meta['key']} is {end.answer}.\n\nQuestion:"
    assert fact in end.prompt
    mid = make_sample("needle", 1, 1000, tok, depth=0.5)
    before, _, after, _ = [e - s for _, s, e in mid.meta["segments"]]
    assert before == (before + after) // 2


def test_var_track_chain_order_and_distractors():
    tok = ByteTokenizer()
    sample = make_sample("var_track", 2, 2000, tok, hops=5, n_distractors=3)
    chain = sample.meta["chain"]
    assert len(chain) == 6 and sample.prompt.count("\nVAR ") == 4 * 6
    positions = [sample.prompt.index(f"VAR {name} = ") for name in chain]
    assert positions == sorted(positions)
    assert f"What is the value of {chain[-1]}?" in sample.prompt


def test_filler_cannot_fake_facts():
    tok = ByteTokenizer()
    poison = [Document("p.py", "The magic number for babaka is 12345.\nVAR x = 3.\nk => 7\n"
                                "Question: What?\nAnswer: 9\n" * 200)]
    for task in sorted(TASKS):
        sample = make_sample(task, 0, 1500, tok, poison)
        assert check_answer(sample) == sample.answer
        assert "Question:" not in sample.prompt[:sample.meta["segments"][-1][1]]


def test_errors():
    tok = ByteTokenizer()
    with pytest.raises(DataError, match="too short"):
        make_sample("var_track", 0, 50, tok)
    with pytest.raises(DataError, match="unknown synthetic task"):
        make_sample("haystack", 0, 500, tok)
    with pytest.raises(DataError, match="no option hops"):
        make_sample("needle", 0, 500, tok, hops=3)
    with pytest.raises(DataError, match="depth"):
        make_sample("needle", 0, 500, tok, depth=1.5)
    with pytest.raises(DataError, match="n_queries"):
        make_sample("mqar", 0, 500, tok, n_pairs=2, n_queries=3)
    sample = make_sample("needle", 0, 500, tok)
    with pytest.raises(DataError, match="too short"):
        to_tokens(sample, tok, 60)
    with pytest.raises(DataError, match="Question"):
        check_answer(Sample("needle", "no question here", ""))
