"""One device call: op micro-benchmarks, then the decode suite, each result saved as it lands.

    OUT=/tmp/out PYTHONPATH=. python benchmarks/gpu_session.py ops decode modes

Environment: CONTEXTS, BATCHES (decode sweep; ops: the indexer top-k contexts and every op's
batches, default 131072 and 1,8), ROWS (comma-separated row names), STEM (file name of the
result), THROUGHPUT=0 (modes: prefill and memory only), REP (do_bench replay time per point, ms).

ops: the indexer top-k at 16-bit and 8-bit keys side by side (``key_bits``, ``key_bytes`` and
``floor_us``, one read of the keys at the copy bandwidth measured in the same run), decode
attention and sparse decode at 128K.
"""

import json
import os
import sys
import traceback

import torch

OUT = os.environ.get("OUT", ".")


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1, default=str)


def ops_bench():
    from clsa.bench.env import environment
    from clsa.bench.floor import copy_bandwidth
    from clsa.ops.attention.bench import bench_decode_attention, bench_sparse_decode
    from clsa.ops.indexer_topk.bench import bench_indexer_topk

    bw = copy_bandwidth()
    res = {"env": environment(), "copy_bandwidth_TBps": bw / 1e12, "indexer_topk": [],
           "decode_attention": [], "sparse_decode": []}
    contexts = [int(x) for x in os.environ.get("CONTEXTS", "131072").split(",")]
    for B in [int(x) for x in os.environ.get("BATCHES", "1,8").split(",")]:
        jobs = [(bench_indexer_topk, "indexer_topk", (B, S, 1, 128, 2048, torch.bfloat16),
                 dict(key_bits=bits, bandwidth=bw)) for S in contexts for bits in (16, 8)]
        jobs += [(bench_decode_attention, "decode_attention", (B, 131072, 24, 8, 128, torch.bfloat16),
                  {}),
                 (bench_sparse_decode, "sparse_decode",
                  (B, 131072, 2048, 24, 8, 128, 13, torch.bfloat16), {})]
        for fn, key, args, kwargs in jobs:
            try:
                r = fn(*args, **kwargs)
            except Exception as e:  # record and go on: one broken kernel must not hide the rest
                r = {"S": args[1], **kwargs, "error": repr(e),
                     "trace": traceback.format_exc()[-2000:]}
                r.pop("bandwidth", None)
            r["B"] = B
            res[key].append(r)
            print(key, json.dumps(r, default=str), flush=True)
            dump("ops_bench.json", res)


def decode_bench():
    from clsa.bench.suite import run_decode, save

    def log(line):
        print(line, flush=True)
        with open(os.path.join(OUT, "decode_rows.jsonl"), "a") as f:
            f.write(line + "\n")

    contexts = [int(x) for x in os.environ.get("CONTEXTS", "32768,131072").split(",")]
    batches = [int(x) for x in os.environ.get("BATCHES", "1,4").split(",")]
    res = run_decode("yoco-3b", contexts, batches, _rows(), log=log, rep=int(os.environ.get("REP", 100)))
    res["mode"] = "full"
    save(res, OUT, os.environ.get("STEM", "decode_yoco3b"))


def _rows():
    from clsa.bench.suite import ROWS

    names = os.environ.get("ROWS", "dense/torch,dense/triton,yoco/triton,yoco-dsa/triton,"
                                   "indexcache(G=4)/triton,clsa/torch,clsa/triton").split(",")
    return [r for r in ROWS if r.name in names]


def modes_bench():
    from clsa.bench.suite import run_modes, save

    def log(line):
        print(line, flush=True)
        with open(os.path.join(OUT, "modes_rows.jsonl"), "a") as f:
            f.write(line + "\n")

    throughput = os.environ.get("THROUGHPUT", "1") == "1"  # THROUGHPUT=0: prefill and memory only
    res = run_modes("yoco-3b", [32768, 131072] if throughput else [], _rows(), [32768, 131072], log=log)
    res["mode"] = "full"
    save(res, OUT, os.environ.get("STEM", "modes_yoco3b"))


if __name__ == "__main__":
    for part in sys.argv[1:]:
        {"ops": ops_bench, "decode": decode_bench, "modes": modes_bench}[part]()
