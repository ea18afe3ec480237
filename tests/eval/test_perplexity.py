"""Perplexity: the packing of windows, agreement with a hand-written loop, the sparse path."""

import math

import pytest
import torch
import torch.nn.functional as F

from clsa.eval import load_checkpoint, perplexity
from clsa.eval.perplexity import token_stream, windows
from clsa.train import ByteTokenizer, DataError
from tests.eval.helpers import debug_model

TOK = ByteTokenizer()
DOCS = ["alpha beta gamma delta " * 9, "x = [i * i for i in range(10)]\n" * 5, "short"]


def test_stream_and_windows_cover_every_target_once():
    stream = token_stream(DOCS, TOK, max_tokens=10**6)
    expected = []
    for d in DOCS:
        expected += list(d.encode()) + [TOK.eos_id]
    assert stream == expected
    wins = windows(stream, 16)
    assert all(len(w) == 17 for w in wins[:-1]) and 2 <= len(wins[-1]) <= 17
    targets = [t for w in wins for t in w[1:]]
    assert targets == stream[1:]
    assert token_stream(DOCS, TOK, max_tokens=50) == expected[:51]


def _manual_nll(model, stream, seq_len, dense_cross=False):
    total, count = 0.0, 0
    for s in range(0, len(stream) - 1, seq_len):
        w = torch.tensor([stream[s:s + seq_len + 1]])
        with torch.no_grad():
            logits = model(w[:, :-1], use_cache=False, dense_cross=dense_cross).logits
        total += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
        count += w.shape[1] - 1
    return total / count, count


@pytest.mark.parametrize("variant", ["clsa", "yoco-dsa", "dense"])
def test_matches_a_hand_written_loop(variant):
    model = debug_model(variant, index_top_k=4)
    for max_tokens, batch in ((10**6, 3), (137, 2), (137, 1)):
        res = perplexity(model, TOK, DOCS, seq_len=32, batch_size=batch, max_tokens=max_tokens)
        stream = token_stream(DOCS, TOK, max_tokens)
        nll, count = _manual_nll(model, stream, 32)
        assert res["tokens"] == count == min(max_tokens, len(stream) - 1)
        assert res["nll"] == pytest.approx(nll, rel=1e-5)
        assert res["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)


def test_sparse_path_is_used():
    """top-k below the window: the sparse forward differs from dense cross-attention; top-k
    covering the whole window: the two agree (a query with <= k visible keys selects all)."""
    stream = token_stream(DOCS, TOK, 10**6)
    small = debug_model("clsa", index_top_k=4)
    res = perplexity(small, TOK, DOCS, seq_len=32, batch_size=4, max_tokens=10**6)
    dense_nll, _ = _manual_nll(small, stream, 32, dense_cross=True)
    assert abs(res["nll"] - dense_nll) > 1e-4
    full = debug_model("clsa", index_top_k=64)
    res = perplexity(full, TOK, DOCS, seq_len=32, batch_size=4, max_tokens=10**6)
    dense_nll, _ = _manual_nll(full, stream, 32, dense_cross=True)
    assert res["nll"] == pytest.approx(dense_nll, rel=1e-5)


def test_checkpoint_roundtrip(debug_ckpt):
    model, tok = load_checkpoint(debug_ckpt.parent)  # a run folder holding model/
    ref = debug_model()
    a = perplexity(model, tok, DOCS, 32, 2, 200)
    b = perplexity(ref, TOK, DOCS, 32, 2, 200)
    assert a == b


def test_a_stopped_run_is_loaded_from_its_latest_checkpoint(debug_ckpt, tmp_path):
    # a run killed before it saved model/: checkpoints/latest names the newest step folder
    import shutil

    run = tmp_path / "run"
    shutil.copytree(debug_ckpt, run / "checkpoints" / "step-000010")
    shutil.copytree(debug_ckpt, run / "checkpoints" / "step-000020")
    (run / "checkpoints" / "latest").write_text("step-000020\n")
    model, tok = load_checkpoint(run)
    assert model.config.attention_variant == "clsa"
    assert perplexity(model, tok, DOCS, 32, 2, 200) == perplexity(debug_model(), TOK, DOCS, 32, 2, 200)


def test_errors():
    model = debug_model()
    with pytest.raises(DataError, match="max_position_embeddings"):
        perplexity(model, TOK, DOCS, seq_len=10**6, batch_size=1, max_tokens=10)
    with pytest.raises(DataError, match="at least 2 tokens"):
        perplexity(model, TOK, [], seq_len=8, batch_size=1, max_tokens=10)
    with pytest.raises(DataError, match="no checkpoint"):
        load_checkpoint("/nonexistent/dir")


def test_checkpoint_with_missing_weights_is_refused(debug_ckpt, tmp_path):
    """transformers would initialise missing weights at random; the evaluation must refuse."""
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "model"
    shutil.copytree(debug_ckpt, bad)
    state = load_file(bad / "model.safetensors")
    dropped = sorted(k for k in state if k.startswith("model.cross_layers.0."))[0]
    del state[dropped]
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(DataError, match="does not match"):
        load_checkpoint(bad)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(debug_ckpt / name, bare)
    with pytest.raises(DataError, match="no saved tokenizer"):
        load_checkpoint(bare)
