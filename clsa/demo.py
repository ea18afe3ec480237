"""`clsa demo`: the main job, end to end, on embedded defaults (the README's first command).

    clsa demo                                   # CPU: tiny preset, a few minutes on 2 cores
    clsa demo --out runs/demo --steps 2000      # longer; on a GPU the small preset is used

1. pretrain `dense` and `yoco` twins on the Python standard library (the embedded corpus) with
   synthetic long-context tasks mixed in;
2. distil a `clsa` indexer from the trained `yoco` (multi-layer KL, backbone frozen), then a
   short sparse stage (LM loss through the shared top-k + KL on the selected set);
3. print a side-by-side table: validation loss, needle retrieval accuracy at a context longer
   than k (so the shared index must find the needle), indexer recall, decode tokens/s on this
   machine, cache bytes per token; then a few greedy lines from each model.
Everything lands in one folder: each stage's run (log.jsonl, loss.png, checkpoints/, model/),
eval/ (synthetic.json/png) and summary.json. A rerun resumes finished or killed stages.
"""

from __future__ import annotations

import json
import os
import time

import torch

from clsa.config import CLSAConfig
from clsa.model.memory import cache_report


def _stage(out: str, name: str, **kw) -> dict:
    from clsa.train.args import TrainArgs
    from clsa.train.trainer import train

    print(f"\n== {name}: {kw.get('stage', 'pretrain')} {kw['variant']} ==", flush=True)
    return train(TrainArgs(out_dir=os.path.join(out, name), **kw))


@torch.no_grad()
def _decode_speed(model, tokens: int = 32, context: int = 256) -> float:
    from clsa.engine import Decoder

    ids = torch.randint(0, model.config.vocab_size, (1, context), device=model.device)
    dec = Decoder(model, 1, context + tokens + 8)
    nxt = dec.prefill(ids).argmax(-1)
    for _ in range(4):  # warm-up (and CUDA-graph capture on a GPU)
        nxt = dec.step(nxt).argmax(-1)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(tokens):
        nxt = dec.step(nxt).argmax(-1)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t)


def run(out: str, steps: int | None, device: str, eval_n: int) -> dict:
    from clsa.eval.checkpoint import load_checkpoint
    from clsa.eval.synthetic_suite import run_synthetic_suite

    from clsa import ops

    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    ops.set_backend("triton" if gpu else "torch")  # stock SDPA on CPU; kernels + SDPA on a GPU
    preset = "small" if gpu else "tiny"
    k = CLSAConfig.from_name(preset).index_top_k
    seq = max(4 * k, 512)  # longer than k (the index has to choose); room for every synthetic task
    steps = steps or (1500 if gpu else 120)
    common = dict(preset=preset, seq_len=seq, batch_size=16 if gpu else 8, device=device,
                  synthetic_mix=0.25, eval_every=max(steps // 4, 1), save_every=max(steps // 4, 1),
                  max_docs=None if gpu else 400)
    runs = {
        "dense": _stage(out, "dense", variant="dense", steps=steps, **common),
        "yoco": _stage(out, "yoco", variant="yoco", steps=steps, **common),
    }
    distill = _stage(out, "clsa-distill", variant="clsa", stage="distill", steps=max(steps // 3, 1),
                     from_checkpoint=os.path.join(out, "yoco"), lr=1e-3, **common)
    runs["clsa"] = _stage(out, "clsa", variant="clsa", stage="sparse", steps=max(steps // 3, 1),
                          from_checkpoint=os.path.join(out, "clsa-distill"), lr=3e-4, **common)
    rows, samples = [], {}
    for name, metrics in runs.items():
        model, tok = load_checkpoint(os.path.join(out, name), device="cuda" if gpu else "cpu")
        suite = run_synthetic_suite(model, tok, tasks=("needle",), lengths=(seq,), n=eval_n,
                                    out_dir=os.path.join(out, "eval", name))
        prompt = torch.tensor([tok.encode("def main():\n    ")], device=model.device)
        text = model.generate(prompt, max_new_tokens=48, do_sample=False)
        samples[name] = tok.decode(text[0, prompt.shape[1]:].tolist())
        rows.append(dict(variant=name, val_loss=metrics.get("val_lm_loss", metrics.get("val_loss")),
                         needle_acc=suite["accuracy"]["needle"][str(seq)],
                         needle_nll=suite["answer_nll"]["needle"][str(seq)],
                         indexer_recall=distill.get("val_recall") if name == "clsa" else None,
                         decode_tok_s=_decode_speed(model),
                         cache_bytes_per_token=cache_report(model.config, 2).per_token,
                         params=sum(p.numel() for p in model.parameters())))
    with open(os.path.join(out, "clsa-distill", "log.jsonl")) as f:
        recalls = [r["val_recall"] for r in map(json.loads, f) if r.get("val_recall") is not None]
    summary = {"preset": preset, "seq_len": seq, "index_top_k": k, "steps": steps, "rows": rows,
               "samples": samples, "indexer_recall_before_distill": recalls[0] if recalls else None,
               "indexer_recall_after_distill": recalls[-1] if recalls else None}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(args) -> int:
    s = run(args.out, args.steps, args.device, args.eval_n)
    f = lambda v, p: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    print(f"\npreset {s['preset']}, context {s['seq_len']} > index_top_k {s['index_top_k']}, "
          f"{s['steps']} pretraining steps; CPU/GPU speed of THIS machine")
    print(f"{'variant':<8} {'params':>10} {'val loss':>9} {'needle acc':>11} {'answer NLL':>11} "
          f"{'recall@k':>9} {'decode tok/s':>13} {'cache B/token':>14}")
    for r in s["rows"]:
        print(f"{r['variant']:<8} {r['params']:>10,} {f(r['val_loss'], 4):>9} {f(r['needle_acc'], 2):>11} "
              f"{f(r['needle_nll'], 3):>11} {f(r['indexer_recall'], 3):>9} {r['decode_tok_s']:>13.1f} "
              f"{r['cache_bytes_per_token']:>14,}")
    print("answer NLL: nats per token of the true needle value, teacher-forced (lower is better; it "
          "moves long before greedy answers are exactly right)")
    print(f"indexer recall of the averaged dense attention mass at k: "
          f"{f(s['indexer_recall_before_distill'], 3)} untrained -> {f(s['indexer_recall_after_distill'], 3)} distilled")
    for name, text in s["samples"].items():
        print(f"\n[{name}] def main():\n    {text!r}")
    print(f"\neverything is in {args.out}/ (summary.json, */loss.png, eval/*/synthetic.png)")
    return 0
