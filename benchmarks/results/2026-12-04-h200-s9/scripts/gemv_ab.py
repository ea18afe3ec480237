"""gemv A/B per tree: python runs/gemv_ab.py TAG (PYTHONPATH = the tree). Each decode shape under its
own prologue, rule tiling, M = 1 and 8, weights streaming from HBM (bench._time over a pool)."""
import json, sys
import torch
from clsa.ops.linear import bench, triton_gemv as tg

tag = sys.argv[1]
dev, bf = "cuda", torch.bfloat16
for name, N, K in bench.SHAPES:
    ws = bench._weights(N, K)
    nw = torch.ones(K, device=dev, dtype=bf)
    for M in (1, 8):
        pro = bench.PROLOGUE[name]
        x = torch.randn(M, 2 * K if pro == "silu" else K, device=dev, dtype=bf)
        r = torch.randn(M, K, device=dev, dtype=bf)
        if pro == "norm":
            fn = lambda i: tg.gemv(x, ws[i], tg.PRO_NORM, nw, 1e-5, r)
        elif pro == "silu":
            fn = lambda i: tg.gemv(x, ws[i], tg.PRO_SILU)
        else:
            fn = lambda i: tg.gemv(x, ws[i])
        us = bench._time(fn, len(ws))
        print("gemv", json.dumps(dict(tree=tag, shape=name, M=M, us=us, TBps=N * K * 2 / us / 1e6)), flush=True)
    del ws
    torch.cuda.empty_cache()
