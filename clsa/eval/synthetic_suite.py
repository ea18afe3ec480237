"""Long-context synthetic suite: accuracy per task x context length, greedy decoding, exact match.

Pipeline (each step a function, so scoring is tested on hand-made outputs)
    build_samples   (task, length) -> n Samples from clsa.train.synthetic; sample i has
                    rng_seed = seed + i, the same across lengths (default seed 2**62: the trainer
                    draws its seeds from [0, 2**62), so evaluation samples are never trained on)
    decode_answers  prompt tokens (to_tokens(...) up to the answer) -> greedy continuation, at
                    most len(answer tokens) + extra_tokens new tokens, stopping at <eos>
    score           normalize(prediction) == normalize(answer): the text before the first
                    newline with all whitespace removed ("11, 22" == "11,22"; order matters)
    summarize       accuracy[task][length] = correct / n; JSON + heat map PNG (task x length)
    answer_nll      the graded twin of accuracy: mean negative log-likelihood (nats/token) of the
                    true answer and <eos> given the prompt, teacher-forced, through the same
                    forward as inference (sparse path, early exit). It moves long before greedy
                    answers become exactly right, so small or short runs can still be compared.

    from clsa.eval import run_synthetic_suite
    res = run_synthetic_suite(model, tok, lengths=[1024, 2048, 4096], n=20, out_dir="eval/")
    res["accuracy"]["needle"]["4096"]      # 0.95

Lengths beyond the model's max_position_embeddings are skipped and listed under "skipped".
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from clsa.eval.checkpoint import as_tokenizer
from clsa.eval.decoding import greedy_generate
from clsa.train.synthetic import TASKS, Sample, make_sample, to_tokens

DEFAULT_TASKS = ("needle", "multi_needle", "mqar", "var_track")
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
EVAL_SEED = 2**62


def normalize(text: str) -> str:
    """The answer line of a model output: text before the first newline, whitespace removed."""
    return "".join(text.split("\n", 1)[0].split())


def score(prediction: str, answer: str) -> bool:
    """Exact match after ``normalize`` on both sides."""
    return normalize(prediction) == normalize(answer)


def build_samples(task: str, length: int, n: int, tokenizer, filler_docs=None, seed: int = EVAL_SEED,
                  **task_kwargs) -> list[Sample]:
    return [make_sample(task, seed + i, length, tokenizer, filler_docs, **task_kwargs)
            for i in range(n)]


def decode_answers(model, tokenizer, samples: list[Sample], length: int, batch_size: int = 1,
                   extra_tokens: int = 4) -> list[str]:
    """Greedy answers to ``samples`` (all made for context ``length``), as decoded text."""
    tok = as_tokenizer(tokenizer)
    prompts, budget = [], 0
    for s in samples:
        ts = to_tokens(s, tok, length)
        prompts.append(ts.input_ids[:ts.prompt_len].tolist())
        budget = max(budget, len(tok.encode(s.answer)) + extra_tokens)
    new = greedy_generate(model, prompts, budget, tok.eos_id, tok.pad_id, batch_size)
    return [tok.decode(ids) for ids in new]


@torch.no_grad()
def answer_nll(model, tokenizer, samples: list[Sample], length: int) -> list[float]:
    """Per sample: mean NLL (nats per token) of its answer tokens and <eos>, teacher-forced."""
    tok = as_tokenizer(tokenizer)
    device = next(model.parameters()).device
    out = []
    for s in samples:
        ts = to_tokens(s, tok, length)
        ids = torch.as_tensor(ts.input_ids, device=device)[None]
        n = ids.shape[1] - ts.prompt_len  # answer + <eos>
        # logits at positions prompt_len-1 .. T-2 predict the answer tokens
        logits = model(ids[:, :-1], logits_to_keep=n, use_cache=False).logits[0].float()
        out.append(F.cross_entropy(logits, ids[0, ts.prompt_len:]).item())
    return out


def score_records(samples: list[Sample], predictions: list[str], length: int) -> list[dict]:
    if len(samples) != len(predictions):
        raise ValueError(f"{len(samples)} samples but {len(predictions)} predictions")
    return [{"task": s.task, "length": length, "seed": s.meta["seed"], "answer": s.answer,
             "prediction": p, "correct": score(p, s.answer)} for s, p in zip(samples, predictions)]


def summarize(records: list[dict], tasks, lengths, field: str = "correct") -> dict:
    """accuracy[task][str(length)] = mean of ``field`` over records (None where no record)."""
    acc: dict[str, dict[str, float | None]] = {}
    for t in tasks:
        acc[t] = {}
        for L in lengths:
            vals = [r[field] for r in records if r["task"] == t and r["length"] == L and field in r]
            acc[t][str(L)] = sum(vals) / len(vals) if vals else None
    return acc


def plot_heatmap(accuracy: dict, path: str | os.PathLike, title: str = "synthetic suite accuracy"):
    """PNG heat map, tasks as rows and lengths as columns, each cell annotated."""
    from clsa.eval.plots import heatmap

    tasks = list(accuracy)
    lengths = list(next(iter(accuracy.values()))) if tasks else []
    grid = [[math.nan if accuracy[t][L] is None else accuracy[t][L] for L in lengths] for t in tasks]
    heatmap(grid, row_labels=tasks, col_labels=[_k(int(L)) for L in lengths], path=path,
            title=title, xlabel="context length (tokens)", vmin=0.0, vmax=1.0, fmt="{:.2f}")


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def run_synthetic_suite(model, tokenizer, tasks=DEFAULT_TASKS, lengths=DEFAULT_LENGTHS, n: int = 20,
                        filler_docs=None, batch_size: int = 1, extra_tokens: int = 4,
                        seed: int = EVAL_SEED, task_options: dict | None = None,
                        out_dir: str | os.PathLike | None = None, progress=None) -> dict:
    """Accuracy per task x length (see the module legend); with ``out_dir``, also writes
    synthetic.json and synthetic.png there. ``task_options``: {task: make_sample kwargs}."""
    tok = as_tokenizer(tokenizer)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown synthetic task(s) {unknown}; choose from {sorted(TASKS)}")
    task_options = task_options or {}
    limit = getattr(model.config, "max_position_embeddings", None)
    kept, skipped = [], []
    for L in lengths:
        # The prompt is L - len(answer) - 1 tokens and at most len(answer) + extra are generated.
        (kept if limit is None or L - 1 + extra_tokens <= limit else skipped).append(L)
    records = []
    for t in tasks:
        for L in kept:
            samples = build_samples(t, L, n, tok, filler_docs, seed, **task_options.get(t, {}))
            preds = decode_answers(model, tok, samples, L, batch_size, extra_tokens)
            recs = score_records(samples, preds, L)
            for r, nll in zip(recs, answer_nll(model, tok, samples, L)):
                r["answer_nll"] = nll
            records += recs
            if progress:
                done = [r for r in records if r["task"] == t and r["length"] == L]
                nll = sum(r["answer_nll"] for r in done) / len(done)
                progress(f"{t:<13} {L:>6}: {sum(r['correct'] for r in done)}/{len(done)}, "
                         f"answer NLL {nll:.3f}")
    result = {"tasks": list(tasks), "lengths": kept, "n": n, "seed": seed,
              "skipped": {str(L): f"prompt + answer budget exceeds max_position_embeddings={limit}"
                          for L in skipped},
              "accuracy": summarize(records, tasks, kept),
              "answer_nll": summarize(records, tasks, kept, "answer_nll"), "records": records}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "synthetic.json").write_text(json.dumps(result, indent=2) + "\n")
        if kept:
            plot_heatmap(result["accuracy"], out / "synthetic.png")
    return result


__all__ = ["DEFAULT_LENGTHS", "DEFAULT_TASKS", "EVAL_SEED", "answer_nll", "build_samples", "decode_answers",
           "normalize", "plot_heatmap", "run_synthetic_suite", "score", "score_records", "summarize"]
