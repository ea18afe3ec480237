"""Checkpoints: exact resume, killed runs, refusal of foreign checkpoints, the on-disk layout.

A "kill" is simulated by raising from the ``on_step`` hook after step k: the run then holds the
checkpoint of its last save_every multiple, exactly what a SIGKILL would leave behind.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from clsa.train.trainer import train
from tests.train.helpers import read_log, small_args


class Killed(Exception):
    """Raised by the on_step hook: stands in for the process dying mid-run."""


def kill_after(k):
    def hook(step, record):
        if step == k:
            raise Killed(step)
    return hook


def _losses(out):
    return [(r["step"], r.get("loss"), r.get("val_loss"), r.get("kl"), r.get("recall"))
            for r in read_log(out)]


@pytest.mark.parametrize("variant, stage", [("clsa", "pretrain"), ("clsa", "distill"),
                                            ("clsa", "sparse")])
def test_killed_and_resumed_equals_straight(corpus, tmp_path, variant, stage):
    kw = dict(variant=variant, stage=stage, steps=10, save_every=5, eval_every=5, grad_accum=2,
              batch_size=2)
    train(small_args(corpus, tmp_path / "straight", **kw))
    with pytest.raises(Killed):
        train(small_args(corpus, tmp_path / "resumed", **kw), on_step=kill_after(7))
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip() == "step-000005"
    assert read_log(tmp_path / "resumed")[-1]["step"] == 7  # steps 6, 7 are lost with the kill
    train(small_args(corpus, tmp_path / "resumed", **kw))
    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert [r[0] for r in resumed] == list(range(11))
    assert straight == resumed  # bit-identical floats, not approximately equal
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_model_names_the_fields_and_the_fix(corpus, tmp_path):
    train(small_args(corpus, tmp_path, variant="clsa", steps=2, eval_every=0, save_every=0))
    with pytest.raises(ValueError, match=r"attention_variant: checkpoint 'clsa', now 'yoco'.*"
                                         r"--out-dir"):
        train(small_args(corpus, tmp_path, variant="yoco", steps=4))
    with pytest.raises(ValueError, match=r"index_top_k: checkpoint 6, now 4"):
        train(small_args(corpus, tmp_path, variant="clsa", overrides={"index_top_k": 4}))
    with pytest.raises(ValueError, match=r"seq_len: checkpoint 32, now 48.*--from"):
        train(small_args(corpus, tmp_path, variant="clsa", seq_len=48, steps=4))


def test_a_finished_run_is_extended_by_raising_steps(corpus, tmp_path, caplog):
    train(small_args(corpus, tmp_path, steps=4, eval_every=0, save_every=0))
    with caplog.at_level("WARNING", logger="clsa.train"):
        metrics = train(small_args(corpus, tmp_path, steps=6, eval_every=0, save_every=0))
    assert "steps changed from 4 to 6" in caplog.text
    assert metrics["step"] == 6 and [r["step"] for r in read_log(tmp_path)] == list(range(7))
    again = train(small_args(corpus, tmp_path, steps=6, eval_every=0, save_every=0))
    assert again["step"] == 6  # nothing left to do: the saved metrics come back


def test_checkpoints_are_complete_pruned_and_point_at_the_newest(corpus, tmp_path):
    train(small_args(corpus, tmp_path, steps=8, save_every=2, eval_every=0, keep_checkpoints=2))
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000006", "step-000008"]
    assert (root / "latest").read_text().strip() == "step-000008"
    files = {p.name for p in (root / "step-000008").iterdir()}
    assert {"model.safetensors", "optimizer.pt", "trainer_state.pt", "train_args.json",
            "config.json", "clsa_tokenizer.json"} <= files
    state = torch.load(root / "step-000008" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 8 and state["stream"]["step"] == 8 and "numpy" in state["rng"]
    assert json.loads((root / "step-000008" / "train_args.json").read_text())["steps"] == 8
    (root / "latest").write_text("step-000004\n")  # names a pruned checkpoint
    with pytest.raises(ValueError, match="missing or incomplete"):
        train(small_args(corpus, tmp_path, steps=8))
