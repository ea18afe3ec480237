"""Synthetic-suite scoring (exact, on hand-made outputs), decoding, the suite end to end, `clsa eval`."""

import json

import pytest
import torch

from clsa.eval.decoding import greedy_generate, pad_left
from clsa.eval.synthetic_suite import (answer_nll, build_samples, decode_answers, normalize,
                                       plot_heatmap, run_synthetic_suite, score, score_records,
                                       summarize)
from clsa.train.synthetic import to_tokens
from clsa.train import ByteTokenizer, check_answer
from tests.eval.helpers import debug_model

TOK = ByteTokenizer()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("prediction, answer, ok", [
    ("48213", "48213", True),
    ("  48213 ", "48213", True),
    ("48213\nQuestion: junk", "48213", True),     # the answer line ends at the first newline
    ("48213\n", "48213", True),
    ("4 8 2 1 3", "48213", True),                 # all whitespace is removed
    ("11,22", "11, 22", True),
    ("11, 22, 33", "11, 22", False),
    ("22, 11", "11, 22", False),                  # order matters
    ("4821", "48213", False),
    ("482130", "48213", False),
    ("\n48213", "48213", False),                  # nothing on the answer line
    ("", "48213", False),
    ("48213.", "48213", False),
])
def test_score_exact(prediction, answer, ok):
    assert score(prediction, answer) is ok


def test_normalize():
    assert normalize(" 1, 2 ,3 \n4") == "1,2,3"
    assert normalize("") == ""


def test_scores_and_accuracy_table_on_hand_made_outputs():
    tasks, lengths = ["needle", "mqar"], [512, 768]
    samples = {(t, L): build_samples(t, L, 4, TOK) for t in tasks for L in lengths}
    records = []
    for (t, L), ss in samples.items():
        a = [s.answer for s in ss]
        if (t, L) == ("needle", 512):
            preds = [a[0], " " + a[1] + " \nmore", "\n" + a[2], "0" + a[3]]     # 2 of 4
        elif (t, L) == ("needle", 768):
            preds = [a[0], a[1], a[2], a[3][:-1]]                              # 3 of 4
        elif (t, L) == ("mqar", 512):
            preds = [x.replace(", ", ",") for x in a]                          # 4 of 4
        else:
            preds = [", ".join(reversed(x.split(", "))) for x in a]            # 0 of 4
        records += score_records(ss, preds, L)
    acc = summarize(records, tasks, lengths)
    assert acc == {"needle": {"512": 0.5, "768": 0.75}, "mqar": {"512": 1.0, "768": 0.0}}
    assert [r["correct"] for r in records[:4]] == [True, True, False, False]
    assert summarize(records, ["var_track"], [512]) == {"var_track": {"512": None}}


def test_parsed_answers_score_perfectly():
    """Predictions recovered by parsing the prompt (check_answer) must all be correct."""
    for task in ("needle", "multi_needle", "mqar", "var_track"):
        ss = build_samples(task, 1024, 3, TOK)
        recs = score_records(ss, [check_answer(s) + "\n<junk>" for s in ss], 1024)
        assert all(r["correct"] for r in recs), task


def test_heatmap_png(tmp_path):
    acc = {"needle": {"1024": 1.0, "2048": 0.5}, "mqar": {"1024": None, "2048": 0.25}}
    plot_heatmap(acc, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG


class _Scripted(torch.nn.Module):
    """generate() that appends a fixed script per prompt (keyed by its last real token)."""

    def __init__(self, scripts):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.scripts, self.calls = scripts, []

    def generate(self, ids, attention_mask, max_new_tokens, pad_token_id, stopping_criteria=None,
                 **kw):
        self.calls.append((ids.clone(), attention_mask.clone()))
        rows = []
        for r in range(ids.shape[0]):
            s = self.scripts[int(ids[r, -1])][:max_new_tokens]
            rows.append(s + [pad_token_id] * (max_new_tokens - len(s)))
        return torch.cat([ids, torch.tensor(rows)], 1)


def test_greedy_generate_cuts_at_eos_and_restores_order():
    eos, pad = 257, 258
    model = _Scripted({1: [10, 11, eos, 12], 2: [20, 21, 22, 23], 3: [eos, 30]})
    prompts = [[5, 1], [7, 7, 7, 2], [3]]
    out = greedy_generate(model, prompts, 3, eos, pad, batch_size=2)
    assert out == [[10, 11], [20, 21, 22], []]
    ids, mask = model.calls[0]  # longest two prompts first, left padded
    assert ids.tolist() == [[7, 7, 7, 2], [pad, pad, 5, 1]]
    assert mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]


def test_pad_left():
    ids, mask = pad_left([[1, 2, 3], [4]], 0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_batched_decoding_equals_one_by_one():
    model = debug_model("clsa", index_top_k=4)
    ss = build_samples("needle", 128, 3, TOK) + build_samples("needle", 128, 2, TOK, seed=7)
    one = decode_answers(model, TOK, ss, 128, batch_size=1)
    many = decode_answers(model, TOK, ss, 128, batch_size=5)
    assert one == many


def test_suite_end_to_end(tmp_path):
    model = debug_model("clsa", index_top_k=4, max_position_embeddings=200)
    res = run_synthetic_suite(model, TOK, tasks=["needle", "var_track"], lengths=[128, 160, 512],
                              n=2, batch_size=2, out_dir=tmp_path,
                              task_options={"var_track": {"hops": 1, "n_distractors": 0}})
    assert res["lengths"] == [128, 160] and list(res["skipped"]) == ["512"]
    assert len(res["records"]) == 2 * 2 * 2
    for r in res["records"]:
        assert r["correct"] == score(r["prediction"], r["answer"])
    for t in ("needle", "var_track"):
        for L in ("128", "160"):
            assert 0.0 <= res["accuracy"][t][L] <= 1.0
    for t in ("needle", "var_track"):  # the graded metric is the mean of the records' NLLs
        for L in (128, 160):
            nll = [r["answer_nll"] for r in res["records"] if r["task"] == t and r["length"] == L]
            assert res["answer_nll"][t][str(L)] == pytest.approx(sum(nll) / len(nll))
    saved = json.loads((tmp_path / "synthetic.json").read_text())
    assert saved["accuracy"] == res["accuracy"] and saved["answer_nll"] == res["answer_nll"]
    assert (tmp_path / "synthetic.png").read_bytes()[:8] == PNG


def test_cli_eval(debug_ckpt, tmp_path, capsys):
    from clsa.cli import build_parser

    parser = build_parser()  # the real `clsa` command line
    text = tmp_path / "docs"
    text.mkdir()
    (text / "a.txt").write_text("def f(x):\n    return x + 1\n" * 40)
    args = parser.parse_args(["eval", "--model", str(debug_ckpt.parent), "--out", str(tmp_path / "ev"),
                              "--docs", str(text), "--seq-len", "64", "--ppl-tokens", "300",
                              "--tasks", "needle", "--lengths", "128", "--n", "2", "--filler", "none"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["perplexity"]["tokens"] == 300 and report["perplexity"]["ppl"] > 1
    assert set(report["synthetic"]["accuracy"]) == {"needle"}
    assert (tmp_path / "ev" / "synthetic.png").exists()
    assert "perplexity" in capsys.readouterr().out


@pytest.mark.parametrize("variant", ["clsa", "dense"])
def test_answer_nll_is_the_teacher_forced_loss_of_answer_and_eos(variant):
    # by hand: one full forward over prompt + answer + <eos>, log-softmax at the positions
    # before each answer token; the suite's early-exit forward must give the same numbers
    model = debug_model(variant, index_top_k=4)
    samples = build_samples("needle", 150, 3, TOK)
    got = answer_nll(model, TOK, samples, 150)
    for s, g in zip(samples, got):
        ts = to_tokens(s, TOK, 150)
        ids, p = ts.input_ids, ts.prompt_len
        logp = torch.log_softmax(model(ids[None]).logits[0].double(), -1)
        want = -logp[torch.arange(p - 1, len(ids) - 1), ids[p:]].mean().item()
        assert g == pytest.approx(want, rel=1e-5)
    assert len(set(got)) == 3  # three different samples, three different losses
