"""Trainer: the loss goes down, the run folder is complete, inputs are checked, the CLI is whole."""

import json
import math

import pytest

from clsa.train.args import TrainArgs
from clsa.train.checkpoint import init_from
from clsa.train.corpus import DataError
from clsa.train.schedule import lr_at
from clsa.train.trainer import train
from tests.train.helpers import read_log, small_args


def test_thirty_steps_lower_the_loss_and_fill_the_run_folder(corpus, tmp_path):
    out = tmp_path / "run"
    metrics = train(small_args(corpus, out, steps=30, eval_every=10, save_every=10))
    log = read_log(out)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    first = sum(r["loss"] for r in steps[:5]) / 5
    last = sum(r["loss"] for r in steps[-5:]) / 5
    assert last < first - 0.3, (first, last)
    assert log[0] == {"step": 0, "val_loss": log[0]["val_loss"]}  # validation before training
    assert metrics["val_loss"] < log[0]["val_loss"] - 0.3
    assert all(r["tokens_per_s"] > 0 and math.isfinite(r["grad_norm"]) for r in steps)
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000030"
    from clsa.model import CLSAForCausalLM
    from clsa.train import load_tokenizer

    model = CLSAForCausalLM.from_pretrained(out / "model")
    assert load_tokenizer(out / "model").vocab_size == model.config.vocab_size == 260


def test_schedule_warms_up_then_decays_to_min_lr():
    kw = dict(lr=1.0, min_lr=0.1, warmup=4, steps=14)
    assert [lr_at(s, **kw) for s in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert lr_at(9, **kw) == pytest.approx(0.55)       # halfway through the cosine
    assert lr_at(14, **kw) == pytest.approx(0.1)
    assert lr_at(20, **kw) == pytest.approx(0.1)       # past the end: stays at min_lr
    assert lr_at(3, lr=1.0, min_lr=0.0, warmup=0, steps=4) < lr_at(2, lr=1.0, min_lr=0.0,
                                                                   warmup=0, steps=4)


def test_missing_or_empty_corpus_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        train(small_args(tmp_path / "nowhere", tmp_path / "a"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="no .txt/.md/.py/.jsonl files"):
        train(small_args(tmp_path / "empty", tmp_path / "b"))


@pytest.mark.parametrize("field, value, fragment", [
    ("seq_len", 0, "TrainArgs.seq_len=0"),
    ("stage", "finetune", "TrainArgs.stage='finetune'"),
    ("tokenizer", "bpe:100", "vocab >= 260"),
    ("distill_target", "layer:x", "'layer:<j>'"),
    ("min_lr", 1.0, "TrainArgs.min_lr=1.0"),
    ("overrides", {"attention_variant": "dense"}, "--variant"),
    ("synthetic_tasks", "needle,haystack", "comma-separated subset"),
    ("synthetic_min_len", 0, "TrainArgs.synthetic_min_len=0"),
])
def test_train_args_name_the_bad_field(field, value, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        TrainArgs(**{field: value})


def test_seq_len_beyond_the_context_names_the_fix(corpus, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        train(small_args(corpus, tmp_path, seq_len=1024))


def test_indexer_stages_need_a_sparse_variant(corpus, tmp_path):
    with pytest.raises(ValueError, match="has none; use --variant clsa"):
        train(small_args(corpus, tmp_path, variant="yoco", stage="distill"))


def test_from_loads_yoco_into_clsa_and_refuses_another_architecture(corpus, tmp_path):
    train(small_args(corpus, tmp_path / "yoco", steps=2, eval_every=0, save_every=0))
    from clsa.config import CLSAConfig
    from clsa.model import CLSAForCausalLM

    clsa = CLSAForCausalLM(CLSAConfig.from_name("debug", vocab_size=260, attention_variant="clsa"))
    missing, unexpected = init_from(clsa, tmp_path / "yoco")
    assert missing and all(k.startswith("model.indexer.") for k in missing) and not unexpected
    dense = CLSAForCausalLM(CLSAConfig.from_name("debug", vocab_size=260,
                                                 attention_variant="dense"))
    with pytest.raises(ValueError, match="needs parameters the source lacks: model.layers.2"):
        init_from(dense, tmp_path / "yoco")
    with pytest.raises(ValueError, match="no such file or folder"):
        init_from(dense, tmp_path / "nope")


def test_bpe_tokenizer_is_trained_and_saved_beside_the_run(corpus, tmp_path):
    metrics = train(small_args(corpus, tmp_path, tokenizer="bpe:300", steps=2, eval_every=0,
                               save_every=0))
    from clsa.train import load_tokenizer

    tok = load_tokenizer(tmp_path / "tokenizer")
    assert tok.kind == "bpe" and load_tokenizer(tmp_path / "model").vocab_size == tok.vocab_size
    assert json.loads((tmp_path / "model" / "config.json").read_text())["vocab_size"] == \
        tok.vocab_size
    assert math.isfinite(metrics["loss"])


def test_cli_help_lists_every_option_with_its_default(capsys):
    import dataclasses

    from clsa.cli import build_parser

    for command in ("train", "distill"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for f in dataclasses.fields(TrainArgs):
            flag = {"from_checkpoint": "--from", "overrides": "--override"}.get(
                f.name, "--" + f.name.replace("_", "-"))
            if f.name == "stage" and command == "distill":
                continue
            assert flag in text, (command, flag)
        assert text.count("(default:") >= len(dataclasses.fields(TrainArgs)) - 2
        assert "torchrun --standalone --nproc_per_node=2" in text
    args = build_parser().parse_args(["train", "--sparse", "--override", "index_top_k=4",
                                      "--override", "indexer_scoring=relu", "--no-progress"])
    assert (args.stage, args.progress) == ("sparse", False)
    assert dict(args.overrides) == {"index_top_k": 4, "indexer_scoring": "relu"}


def test_cli_trains_on_the_embedded_corpus(tmp_path, capsys):
    from clsa.cli import main

    rc = main(["train", "--preset", "debug", "--variant", "yoco", "--max-docs", "40",
               "--seq-len", "32", "--batch-size", "2", "--steps", "3", "--eval-every", "0",
               "--eval-batches", "1", "--out-dir", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert json.loads(out)["step"] == 3
    assert main(["train", "--preset", "debug", "--data", str(tmp_path / "missing"),
                 "--out-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
