"""Session 7 probe (H200): 13 back-to-back decode-attention launches over the compact top-k buffer
and over the self-decoder ring at every split size, B = 4 and 8 (session 6 chose the short-span
plan at B = 1 and 4 on the H100); CUDA-graph medians in us, beside the bytes-read floor of the
stack at the copy bandwidth measured here. Also the stack with 4 warps vs the default."""
import json, os, torch
from clsa.bench.floor import copy_bandwidth
from clsa.ops.attention import triton_decode as td
from clsa.ops.attention.bench import median_us
from clsa.ops.sparse_attention import triton_gather as tg

dev, bf, L = "cuda", torch.bfloat16, 13
bw = copy_bandwidth()
out = [dict(copy_TBps=bw / 1e12, device=torch.cuda.get_device_name())]
print(out[-1], flush=True)
for B in (4, 8):
    S, K, W = 131072, 2048, 1024
    qs = [torch.randn(B, 1, 24, 128, dtype=bf, device=dev) for _ in range(L)]
    k = torch.randn(B, S, 8, 128, dtype=bf, device=dev); v = torch.randn_like(k)
    idx = torch.stack([torch.randperm(S, device=dev)[:K] for _ in range(B)]).int()
    ks, vs = tg.gather_kv(k, v, idx)
    del k, v
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device=dev)
    kv0 = torch.zeros(B, dtype=torch.long, device=dev)
    kr = [torch.randn(B, W, 8, 128, dtype=bf, device=dev) for _ in range(L)]
    vr = [torch.randn_like(x) for x in kr]
    pr = (torch.arange(S - W, S, device=dev)[None].expand(B, W)).contiguous()
    for kind, span, run in (
            ("compact", K, lambda c, w: [td.attention_decode(q, ks, vs, q_pos, idx, kv0, chunk=c, num_warps=w)
                                         for q in qs]),
            ("ring", W, lambda c, w: [td.attention_decode(q, kr[i], vr[i], q_pos, pr, kv0, window=W, chunk=c,
                                                          num_warps=w) for i, q in enumerate(qs)])):
        floor_us = L * 2 * B * span * 8 * 128 * 2 / bw * 1e6
        for c in [None] + [x for x in (64, 128, 256, 512, 1024, 2048) if x <= span]:
            for w in (None, 4, 8):
                try:
                    us = median_us(lambda: run(c, w))
                except Exception as e:  # a tiling that does not compile: record and go on
                    us = repr(e)[:80]
                out.append(dict(kind=kind, B=B, chunk=c or "plan", NS=span // c if c else "plan",
                                warps=w or "default", us=us, floor_us=floor_us))
                print(out[-1], flush=True)
json.dump(out, open(os.environ.get("OUT", ".") + "/split_probe_b8.json", "w"), indent=1)
