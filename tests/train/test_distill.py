"""Indexer distillation (stage 1) and sparse training (stage 2) on the debug preset.

The distillation target must have structure for recall to move: attention of an untrained debug
model is nearly uniform (recall = k / visible keys whatever the indexer does), so the module
first pretrains a yoco backbone for 80 steps at a high rate (a few seconds) and distils clsa
indexers from it.
seq_len 64 > index_top_k 6, so recall < 1 is possible on 58 of the 64 query rows.
"""

import math

import pytest
import torch
from safetensors.torch import load_file

from clsa.config import CLSAConfig
from clsa.train.distill import kl_rows, served_layers, target_layers
from clsa.train.distributed import is_indexer_param
from clsa.train.trainer import train
from tests.train.helpers import read_log, small_args


@pytest.fixture(scope="module")
def backbone(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("yoco")
    train(small_args(corpus, out, seq_len=64, steps=80, lr=3e-2, min_lr=3e-3, warmup=5,
                     eval_every=0, eval_batches=1, save_every=0))
    return out


@pytest.fixture(scope="module")
def distilled(corpus, backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill")
    train(small_args(corpus, out, variant="clsa", stage="distill", from_checkpoint=str(backbone),
                     seq_len=64, steps=20, lr=1e-2, min_lr=1e-3, eval_every=10, save_every=0))
    return out


def test_distill_raises_recall_and_trains_only_the_indexer(backbone, distilled):
    log = read_log(distilled)
    before, after = log[0], log[-1]
    assert before["step"] == 0 and after["step"] == 20
    # 0.22 -> 0.53 when written; the untrained indexer sits near chance (k / visible keys).
    assert after["val_recall"] > before["val_recall"] + 0.1, (before, after)
    assert after["val_kl"] < 0.7 * before["val_kl"]
    assert after["val_trivial_rows"] == pytest.approx(6 / 64)  # rows 0..5 see <= k keys
    assert all(r["recall"] is not None and 0 < r["recall"] <= 1 for r in log[1:])
    src = load_file(str(backbone / "model" / "model.safetensors"))
    new = load_file(str(distilled / "model" / "model.safetensors"))
    frozen = [k for k in new if not is_indexer_param(k)]
    assert frozen and all(torch.equal(src[k], new[k]) for k in frozen)
    assert sorted(k for k in new if is_indexer_param(k)) and not any(
        is_indexer_param(k) for k in src)


def test_sparse_stage_from_a_distilled_checkpoint(corpus, distilled, tmp_path):
    metrics = train(small_args(corpus, tmp_path, variant="clsa", stage="sparse",
                               from_checkpoint=str(distilled), seq_len=64, steps=4,
                               eval_every=2, save_every=0, kl_weight=0.5))
    for key in ("loss", "lm_loss", "kl", "recall", "val_loss", "val_kl", "val_recall"):
        assert math.isfinite(metrics[key]), key
    assert metrics["loss"] == pytest.approx(metrics["lm_loss"] + 0.5 * metrics["kl"])
    src = load_file(str(distilled / "model" / "model.safetensors"))
    new = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert not torch.equal(src["model.embed_tokens.weight"],
                           new["model.embed_tokens.weight"])  # the backbone trains
    assert not torch.equal(src["model.indexer.wq.weight"], new["model.indexer.wq.weight"])


def test_indexcache_distills_against_one_served_layer(corpus, backbone, tmp_path):
    over = {"index_refresh_every": 2}  # debug: 2 cross layers, one indexer serving both
    metrics = train(small_args(corpus, tmp_path, variant="indexcache", overrides=over,
                               stage="distill", distill_target="layer:1", seq_len=64, steps=2,
                               from_checkpoint=str(backbone), eval_every=0, save_every=0))
    assert math.isfinite(metrics["kl"]) and metrics["val_recall"] is not None
    with pytest.raises(ValueError, match="serves only 2 layer"):
        train(small_args(corpus, tmp_path / "b", variant="indexcache", overrides=over,
                         stage="distill", distill_target="layer:2", seq_len=64, steps=1))


def test_rows_with_at_most_k_keys_are_excluded_from_recall(corpus, tmp_path):
    metrics = train(small_args(corpus, tmp_path, variant="clsa", stage="distill", seq_len=6,
                               steps=1, eval_every=0, save_every=0))
    assert metrics["recall"] is None and metrics["val_recall"] is None
    assert metrics["trivial_rows"] == 1.0 and math.isfinite(metrics["kl"])


def test_served_and_target_layers_per_variant():
    cfg = lambda v, **kw: CLSAConfig.from_name("debug", num_hidden_layers=6, num_self_layers=2,
                                               attention_variant=v, **kw)
    assert served_layers(cfg("clsa")) == {0: [0, 1, 2, 3]}
    assert served_layers(cfg("yoco-dsa")) == {0: [0], 1: [1], 2: [2], 3: [3]}
    assert served_layers(cfg("indexcache", index_refresh_every=3)) == {0: [0, 1, 2], 3: [3]}
    assert target_layers(cfg("clsa"), 2) == {0: [2]}
    assert target_layers(cfg("indexcache", index_refresh_every=3), 0) == {0: [0], 3: [3]}


def test_kl_rows_matches_torch_kl_div_and_skips_invisible_keys():
    torch.manual_seed(0)
    s = torch.randn(2, 3, 7)
    s[..., 5:] = float("-inf")
    p = torch.softmax(torch.randn(2, 3, 7).masked_fill(torch.isinf(s), float("-inf")), -1)
    ref = torch.nn.functional.kl_div(torch.log_softmax(s[..., :5], -1), p[..., :5],
                                     reduction="none").sum(-1)
    s.requires_grad_(True)
    got = kl_rows(p, s)
    torch.testing.assert_close(got, ref)
    got.sum().backward()
    assert torch.isfinite(s.grad).all() and (s.grad[..., 5:] == 0).all()
