"""`clsa <command>`: a thin command line over the library.

    clsa info --preset yoco-3b          parameters and cache bytes per token, per variant
    clsa info --preset debug --variant clsa
    clsa demo                           the main job on its embedded defaults
"""

from __future__ import annotations

import argparse
import sys

import torch


def _human(n: float, unit: str = "B") -> str:
    for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(n) < 1024 or prefix == "Ti":
            return f"{n:.1f} {prefix}{unit}" if prefix else f"{int(n)} {unit}"
        n /= 1024
    return str(n)


def cmd_info(args) -> int:
    from clsa.config import VARIANTS, CLSAConfig
    from clsa.model import CLSAForCausalLM
    from clsa.model.memory import cache_report

    variants = VARIANTS if args.variant == "all" else (args.variant,)
    print(f"preset {args.preset}; cache in {args.dtype_bytes}-byte elements; "
          f"context {args.context} for the per-sequence column")
    print(f"{'variant':<11} {'params':>14} {'cache/token':>12} {'of it indexer':>14} "
          f"{'fixed/seq':>11} {'per seq @ctx':>13}")
    for v in variants:
        g = args.refresh_every if v == "indexcache" else 1
        cfg = CLSAConfig.from_name(args.preset, attention_variant=v, index_refresh_every=g)
        with torch.device("meta"):  # count parameters without allocating them
            n = sum(p.numel() for p in CLSAForCausalLM(cfg).parameters())
        r = cache_report(cfg, args.dtype_bytes)
        print(f"{v:<11} {n:>14,} {_human(r.per_token):>12} {_human(r.indexer_per_token):>14} "
              f"{_human(r.per_sequence_fixed):>11} {_human(r.per_sequence(args.context)):>13}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from clsa.config import PRESETS, VARIANTS

    p = argparse.ArgumentParser(prog="clsa", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="parameter count and cache bytes per token, per variant")
    info.add_argument("--preset", default="yoco-3b", choices=sorted(PRESETS))
    info.add_argument("--variant", default="all", choices=("all",) + VARIANTS)
    info.add_argument("--refresh-every", type=int, default=4, help="G for indexcache (default 4)")
    info.add_argument("--dtype-bytes", type=int, default=2, help="2 for bf16 caches, 4 for fp32")
    info.add_argument("--context", type=int, default=131072, help="context for the per-sequence column")
    info.set_defaults(func=cmd_info)
    demo = sub.add_parser("demo", help="the main job on embedded defaults (see clsa/demo.py)")
    demo.add_argument("--out", default="runs/demo", help="output folder (reruns resume)")
    demo.add_argument("--steps", type=int, default=None, help="pretraining steps (default 120 CPU, 1500 GPU)")
    demo.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    demo.add_argument("--eval-n", type=int, default=10, help="needle samples per model")
    demo.set_defaults(func=lambda a: __import__("clsa.demo", fromlist=["main"]).main(a))
    from clsa.train.cli import register as register_train
    from clsa.eval.cli import register as register_eval
    register_train(sub)  # train, distill
    register_eval(sub)  # eval, analyze routing
    from clsa.bench.cli import register as register_bench
    register_bench(sub)  # bench
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"clsa {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
