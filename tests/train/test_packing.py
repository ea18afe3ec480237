"""PackedStream: packing is lossless, deterministic, rank-disjoint, resumable; synthetic rows."""

import json
import time

import pytest
import torch

from clsa.train import (ByteTokenizer, DataError, Document, PackedStream, Sample, check_answer,
                        stdlib_corpus)

TOK = ByteTokenizer()


@pytest.fixture(scope="module")
def docs(small_docs):
    """Ten small documents (a few KB each), so tests cross several epochs quickly."""
    return [Document(d.name, d.text[:3000]) for d in small_docs[:10]]


def _batches(stream, n):
    return [stream.next_batch() for _ in range(n)]


def _same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def _stream_tokens(batches):
    """Rebuild the packed token stream: consecutive windows share one token."""
    rows = [torch.cat([b["input_ids"], b["labels"][:, -1:]], 1) for b in batches]
    windows = torch.cat(rows).tolist()
    out = list(windows[0])
    for w in windows[1:]:
        assert w[0] == out[-1]
        out += w[1:]
    return out


def test_shapes_and_shifted_labels(docs):
    batch = PackedStream(docs, TOK, seq_len=64, batch_size=4, seed=0).next_batch()
    assert set(batch) == {"input_ids", "labels", "loss_mask", "synthetic"}
    assert batch["synthetic"].shape == (4,) and not batch["synthetic"].any()
    dtypes = {"input_ids": torch.long, "labels": torch.long, "loss_mask": torch.bool}
    for key, dtype in dtypes.items():
        assert batch[key].shape == (4, 64) and batch[key].dtype == dtype
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    assert batch["loss_mask"].all()


def test_each_epoch_is_a_permutation_of_the_documents(docs):
    stream = PackedStream(docs, TOK, seq_len=100, batch_size=3, seed=0)
    n = stream.tokens_per_epoch
    assert n == sum(len(d.text.encode()) + 1 for d in docs)
    tokens = _stream_tokens(_batches(stream, 2 * n // 300 + 2))
    expected = sorted(TOK.encode(d.text) for d in docs)
    orders = []
    for epoch in (tokens[:n], tokens[n:2 * n]):
        assert epoch[-1] == TOK.eos_id
        parts = bytes(t if t < 256 else 0 for t in epoch[:-1]).split(b"\x00")
        assert sorted(list(p) for p in parts) == expected
        orders.append(parts)
    assert orders[0] != orders[1]


def test_deterministic_for_a_seed(docs):
    a = _batches(PackedStream(docs, TOK, 50, 2, seed=1), 6)
    b = _batches(PackedStream(docs, TOK, 50, 2, seed=1), 6)
    c = _batches(PackedStream(docs, TOK, 50, 2, seed=2), 6)
    assert _same(a, b) and not _same(a, c)


def test_ranks_take_disjoint_batches(docs):
    world = 3
    glob = _batches(PackedStream(docs, TOK, 40, 2, seed=0), 4 * world)
    for rank in range(world):
        mine = _batches(PackedStream(docs, TOK, 40, 2, seed=0, rank=rank, world_size=world), 4)
        assert _same(mine, glob[rank::world])


def test_resume_reproduces_remaining_batches(docs):
    kwargs = dict(seq_len=300, batch_size=3, seed=4, rank=1, world_size=2, synthetic_mix=0.3,
                  synthetic_tasks={"needle": {}, "var_track": {"hops": 2}}, synthetic_len=280)
    full = PackedStream(docs, TOK, **kwargs)
    first = _batches(full, 5)
    state = json.loads(json.dumps(full.state_dict()))
    rest = _batches(full, 8)
    resumed = PackedStream(docs, TOK, **kwargs)
    resumed.load_state_dict(state)
    assert _same(rest, _batches(resumed, 8))
    assert not _same(first[:1], rest[:1])
    other = PackedStream(docs, TOK, **{**kwargs, "seq_len": 290})
    with pytest.raises(DataError, match="seq_len: saved 300, now 290"):
        other.load_state_dict(state)


def test_synthetic_rows_are_masked_except_the_answer(docs):
    stream = PackedStream(docs, TOK, seq_len=512, batch_size=8, seed=0, synthetic_mix=1.0,
                          synthetic_tasks=["needle", "multi_needle", "mqar", "var_track"],
                          synthetic_len=450)
    batch = stream.next_batch()
    assert batch["synthetic"].all()
    assert torch.equal(batch["labels"] == -100, ~batch["loss_mask"])
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["loss_mask"]):
        assert (ids[450:] == TOK.pad_id).all() and not mask[449:].any()
        answer = labels[mask].tolist()
        assert answer[-1] == TOK.eos_id
        start = int(mask.long().argmax()) + 1
        prompt = TOK.decode(ids[:start])
        assert check_answer(Sample("", prompt, "")) == TOK.decode(answer)


def test_synthetic_lengths_span_the_range_and_resume(docs):
    kwargs = dict(seq_len=600, batch_size=8, seed=3, synthetic_mix=1.0,
                  synthetic_tasks=["needle"], synthetic_len=600, synthetic_min_len=150)
    stream = PackedStream(docs, TOK, **kwargs)
    batches = _batches(stream, 6)
    # A row's sample ends with the last trained token (<eos>); the rest is <pad>.
    lengths = [int(m.nonzero().max()) + 2 for b in batches for m in b["loss_mask"]]
    assert 150 <= min(lengths) and max(lengths) <= 600
    assert min(lengths) < 250 and max(lengths) > 450  # log-uniform: both ends are drawn
    again = PackedStream(docs, TOK, **kwargs)
    _batches(again, 3)
    resumed = PackedStream(docs, TOK, **kwargs)
    resumed.load_state_dict(again.state_dict())
    assert _same(_batches(resumed, 3), batches[3:])
    fixed = PackedStream(docs, TOK, **{**kwargs, "synthetic_min_len": None})
    with pytest.raises(DataError, match="synthetic_min_len: saved 150, now None"):
        fixed.load_state_dict(again.state_dict())
    with pytest.raises(DataError, match="synthetic_min_len=700"):
        PackedStream(docs, TOK, **{**kwargs, "synthetic_min_len": 700})
    # Below a sample's own facts + question + answer, the sample sets the floor.
    short = PackedStream(docs, TOK, **{**kwargs, "synthetic_min_len": 1})
    lengths = []
    for b in _batches(short, 3):
        for ids, m in zip(b["input_ids"], b["loss_mask"]):
            lengths.append(int(m.nonzero().max()) + 2)
            prompt = TOK.decode(ids[:int(m.long().argmax()) + 1])
            assert check_answer(Sample("", prompt, ""))
    assert 90 < min(lengths) < 130  # a needle fact + question + answer is about 100 tokens


def test_synthetic_mix_fraction(docs):
    stream = PackedStream(docs, TOK, seq_len=150, batch_size=20, seed=0, synthetic_mix=0.25,
                          synthetic_tasks=["needle"])
    masks = torch.cat([b["loss_mask"] for b in _batches(stream, 5)])
    synthetic = (~masks.all(1)).float().mean().item()
    assert 0.1 < synthetic < 0.4


def test_errors(docs):
    with pytest.raises(DataError, match="empty document list"):
        PackedStream([], TOK, 16, 1, 0)
    with pytest.raises(DataError, match="lower seq_len"):
        PackedStream([Document("a", "tiny")], TOK, 16, 1, 0)
    with pytest.raises(DataError, match="rank"):
        PackedStream(docs, TOK, 16, 1, 0, rank=2, world_size=2)
    with pytest.raises(DataError, match="synthetic_len"):
        PackedStream(docs, TOK, 16, 1, 0, synthetic_mix=0.5, synthetic_len=32)
    with pytest.raises(DataError, match="unknown synthetic tasks"):
        PackedStream(docs, TOK, 16, 1, 0, synthetic_mix=0.5, synthetic_tasks=["haystack"])
    with pytest.raises(DataError, match="too short"):
        PackedStream(docs, TOK, 64, 1, 0, synthetic_mix=0.5, synthetic_tasks=["var_track"])


def test_full_stdlib_with_byte_tokenizer_is_fast():
    corpus = stdlib_corpus()
    start = time.perf_counter()
    stream = PackedStream(corpus, TOK, seq_len=2048, batch_size=8, seed=0)
    batch = stream.next_batch()
    assert time.perf_counter() - start < 10.0
    assert stream.tokens_per_epoch > 10_000_000 and batch["input_ids"].shape == (8, 2048)
