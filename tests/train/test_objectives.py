"""The LM objective's token weighting: synthetic answers can outweigh text tokens."""

import torch

from clsa.train.objectives import token_weights
from clsa.train.trainer import train
from tests.train.helpers import read_log, small_args


def _batch():
    labels = torch.tensor([[5, 6, 7, 8], [-100, -100, 3, 257]])
    return {"labels": labels, "synthetic": torch.tensor([False, True])}


def test_weight_one_is_the_plain_trained_mask():
    w = token_weights(_batch(), 1.0)
    assert torch.equal(w, torch.tensor([[1.0, 1, 1, 1], [0, 0, 1, 1]]))


def test_synthetic_rows_get_their_weight_and_untrained_tokens_none():
    w = token_weights(_batch(), 8.0)
    assert torch.equal(w, torch.tensor([[1.0, 1, 1, 1], [0, 0, 8, 8]]))
    # The weighted mean a trainer forms: two answer tokens now count as much as 16 text tokens.
    per = torch.tensor([[1.0, 1, 1, 1], [9, 9, 3, 5]])
    assert (per * w).sum() / w.sum() == (4 * 1.0 + 8 * 3 + 8 * 5) / 20


def test_training_logs_the_answer_loss(corpus, tmp_path):
    out = tmp_path / "run"
    train(small_args(corpus, out, steps=2, seq_len=256, synthetic_mix=1.0, synthetic_weight=4.0,
                     synthetic_tasks="needle", eval_every=2))
    steps = [r for r in read_log(out) if "loss" in r]
    # Every trained token is an answer token of equal weight, so the weighted mean is the plain one.
    assert all(abs(r["loss"] - r["answer_loss"]) < 1e-5 for r in steps)
    assert "val_answer_loss" in read_log(out)[-1]
