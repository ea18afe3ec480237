"""`clsa bench`: decode | throughput | prefill | memory | all.

    clsa bench all --out benchmarks/results                 # GPU, yoco-3b shape, bf16 (two runs of
    clsa bench decode --contexts 4096 131072 --batches 1 4   #  under 10 minutes each on an H100)
    clsa bench all --quick --out /tmp/bench                  # CPU smoke test: debug preset, tiny
                                                             # contexts; timings are meaningless
    clsa bench plot benchmarks/results/decode-*.json         # redraw Markdown + PNG from a JSON
"""

from __future__ import annotations

import datetime

import torch


def cmd_bench(args) -> int:
    from clsa.bench.suite import ROWS, run_decode, run_modes, save

    if args.mode == "plot":
        import json
        import os

        if not args.files:
            raise SystemExit("clsa bench plot: name the result JSON files to redraw")
        for path in args.files:
            with open(path) as f:
                res = json.load(f)
            if "env" not in res or not ("rows" in res or "throughput" in res):
                print(f"skipped {path}: not a `clsa bench` result")
                continue
            stem = os.path.splitext(path)[0]
            print("wrote", save(res, os.path.dirname(stem) or ".", os.path.basename(stem)) + ".{json,md,png}")
        return 0
    quick = args.quick or not torch.cuda.is_available()
    if not args.quick and not torch.cuda.is_available():
        print("no CUDA GPU: running --quick on the CPU (timings here say nothing about a GPU)")
    device = "cpu" if quick else "cuda"
    preset = "debug" if quick else args.preset
    contexts = args.contexts or ([32, 64] if quick else [4096, 16384, 32768, 65536, 131072])
    batches = args.batches or ([1, 2] if quick else [1, 4, 8])
    rows = [r for r in ROWS if not args.rows or r.name in args.rows]
    if quick:
        rows = [r for r in rows if r.backend == "torch"]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.mode in ("decode", "all"):
        res = run_decode(preset, contexts, batches, rows, device=device, rep=args.rep)
        res["mode"] = "quick" if quick else "full"
        print("wrote", save(res, args.out, f"decode-{preset}-{stamp}") + ".{json,md,png}")
    if args.mode in ("throughput", "prefill", "memory", "all"):
        tp = [c for c in contexts if c in (32768, 131072)] or contexts[-2:]
        res = run_modes(preset, tp if args.mode in ("throughput", "all") else [], rows,
                        tp if args.mode in ("prefill", "all") else [], device=device,
                        memory_context=contexts[-1] if quick else 131072)
        res["mode"] = "quick" if quick else "full"
        print("wrote", save(res, args.out, f"modes-{preset}-{stamp}") + ".{json,md,png}")
    return 0


def register(sub) -> None:
    from clsa.config import PRESETS

    p = sub.add_parser("bench", help="decode / throughput / prefill / memory benchmarks of every variant",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("decode", "throughput", "prefill", "memory", "all", "plot"))
    p.add_argument("files", nargs="*", help="plot: result JSON files")
    p.add_argument("--quick", action="store_true", help="CPU smoke run on the debug preset")
    p.add_argument("--preset", default="yoco-3b", choices=sorted(PRESETS))
    p.add_argument("--contexts", type=int, nargs="+", default=None)
    p.add_argument("--batches", type=int, nargs="+", default=None)
    p.add_argument("--rows", nargs="+", default=None, help="e.g. dense/torch clsa/triton")
    p.add_argument("--rep", type=int, default=100, help="do_bench replay time per point (ms)")
    p.add_argument("--out", default="benchmarks/results")
    p.set_defaults(func=cmd_bench)
