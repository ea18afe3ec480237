"""lm-eval adapter: request-level numbers against hand computation, local task YAMLs, and the real
harness end to end on the fixture files (arc_challenge, gsm8k, drop) with networking disabled."""

import socket

import pytest
import torch
import yaml

pytest.importorskip("lm_eval", reason='needs lm-evaluation-harness: pip install "lm-eval>=0.4.8,<0.5"')

from lm_eval.api.instance import Instance  # noqa: E402

from clsa.eval.lm_eval_adapter import CLSALM, find_task_yaml, run_lm_eval, write_local_task  # noqa: E402
from clsa.train import ByteTokenizer  # noqa: E402
from tests.eval.helpers import FIXTURES, debug_model  # noqa: E402

TOK = ByteTokenizer()
DATA = FIXTURES / "lm_eval"


def req(kind, args, i=0):
    return Instance(request_type=kind, doc={}, arguments=args, idx=i)


def logprob(model, ctx_ids, cont_ids):
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1], use_cache=False).logits[0], -1)
    n = len(cont_ids)
    rows = logp[-n:]
    return rows.gather(-1, torch.tensor(cont_ids)[:, None]).sum().item(), \
        bool((rows.argmax(-1) == torch.tensor(cont_ids)).all())


@pytest.fixture(scope="module")
def lm():
    return CLSALM(model=debug_model("clsa", index_top_k=4), tokenizer=TOK, batch_size=3,
                  max_gen_toks=12)


def test_loglikelihood_matches_hand_computation(lm):
    pairs = [("Question: 2+2?\nAnswer:", " 4"), ("", "hello"), ("abc ", "def"),
             ("a much longer context that pads the others on the left", " ok"), ("x", "")]
    got = lm.loglikelihood([req("loglikelihood", p, i) for i, p in enumerate(pairs)])
    expect = [logprob(lm.model, list(b"Question: 2+2?\nAnswer:"), list(b" 4")),
              logprob(lm.model, [TOK.eos_id], list(b"hello")),
              logprob(lm.model, list(b"abc"), list(b" def")),   # trailing space moves over
              logprob(lm.model, list(b"a much longer context that pads the others on the left"),
                      list(b" ok")),
              (0.0, True)]
    for (lp, greedy), (want_lp, want_greedy) in zip(got, expect):
        assert lp == pytest.approx(want_lp, abs=1e-4) and greedy == want_greedy


def test_context_is_cut_from_the_left(lm):
    small = CLSALM(model=lm.model, tokenizer=TOK, max_length=16)
    (lp, _), = small.loglikelihood([req("loglikelihood", ("0123456789" * 3, "abc"))])
    want, _ = logprob(lm.model, list(b"0123456789" * 3)[-14:], list(b"abc"))
    assert lp == pytest.approx(want, abs=1e-4)


def test_loglikelihood_rolling(lm):
    text = "def f(x):\n    return x * 2\n"
    (total,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", (text,))])
    want, _ = logprob(lm.model, [TOK.eos_id], list(text.encode()))
    assert total == pytest.approx(want, abs=1e-4)
    small = CLSALM(model=lm.model, tokenizer=TOK, max_length=8, batch_size=4)
    (windowed,) = small.loglikelihood_rolling([req("loglikelihood_rolling", (text,))])
    ids = list(text.encode())
    ref = logprob(lm.model, [TOK.eos_id], ids[:8])[0]            # first window: 8 targets
    for s in range(8, len(ids), 8):                              # then disjoint 8-token windows
        e = min(s + 8, len(ids))
        ref += logprob(lm.model, ids[max(0, e - 9):s], ids[s:e])[0]
    assert windowed == pytest.approx(ref, abs=1e-4)


def test_generate_until(lm):
    gen = {"until": ["\n\n", "Question:"], "do_sample": False}
    outs = lm.generate_until([req("generate_until", ("Question: 1+1?\nAnswer:", gen), 0),
                              req("generate_until", ("", {"until": "x", "max_gen_toks": 5}), 1),
                              req("generate_until", ("abc", gen), 2)])
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert all("Question:" not in o and "\n\n" not in o for o in outs)
    assert len(outs[0].encode()) <= 12 and len(outs[1].encode()) <= 5 and "x" not in outs[1]
    from clsa.eval.decoding import greedy_generate

    raw = greedy_generate(lm.model, [list(b"abc")], 12, TOK.eos_id, TOK.pad_id)[0]
    assert TOK.decode(raw).split("\n\n")[0].split("Question:")[0] == outs[2]


def test_local_task_yaml(tmp_path):
    path, info = write_local_task("gsm8k", DATA, tmp_path / "tasks", tmp_path / "cache")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["include"] == str(find_task_yaml("gsm8k")) and cfg["include"].endswith("gsm8k.yaml")
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert set(cfg["dataset_kwargs"]["data_files"]) == {"train", "test"}
    path, info = write_local_task("arc_challenge", DATA, tmp_path / "tasks")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["training_split"] is None and cfg["validation_split"] is None
    assert info["splits"]["test_split"] == "test"
    with pytest.raises(FileNotFoundError, match="no data for task 'arc_easy'"):
        write_local_task("arc_easy", DATA, tmp_path / "tasks")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline evaluation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_real_harness_on_fixture_tasks(debug_ckpt, tmp_path, no_network):
    res = run_lm_eval(debug_ckpt, ["arc_challenge", "gsm8k", "drop"], DATA, limit=2,
                      batch_size=4, max_gen_toks=16, work_dir=tmp_path)
    r = res["results"]
    assert 0.0 <= r["arc_challenge"]["acc,none"] <= 1.0
    assert 0.0 <= r["arc_challenge"]["acc_norm,none"] <= 1.0
    assert 0.0 <= r["gsm8k"]["exact_match,strict-match"] <= 1.0
    assert 0.0 <= r["drop"]["f1,none"] <= 1.0 and 0.0 <= r["drop"]["em,none"] <= 1.0
    assert res["n_samples"]["arc_challenge"] == {"original": 4, "effective": 2}
    assert res["n_shot"]["gsm8k"] == 5                       # the built-in 5-shot config, kept
    assert (tmp_path / "tasks" / "drop.yaml").exists()
