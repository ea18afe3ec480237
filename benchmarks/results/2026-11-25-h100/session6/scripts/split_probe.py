"""Session 6 probe: 13 back-to-back decode-attention launches (compact top-k buffer, and the
self-decoder ring) at different split sizes, PDL on and off; CUDA-graph medians in us."""
import json, os, torch
from clsa.ops.attention import triton_decode as td
from clsa.ops.attention.bench import median_us
from clsa.ops.sparse_attention import triton_gather as tg

dev, bf, L = "cuda", torch.bfloat16, 13
out = []
for B in (1, 4):
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
    for pdl in (True, False):
        td.PDL = pdl
        for c in (64, 128, 256, 512, 1024, 2048):
            us = median_us(lambda: [td.attention_decode(q, ks, vs, q_pos, idx, kv0, chunk=c) for q in qs])
            out.append(dict(kind="compact", B=B, chunk=c, NS=K // c, pdl=pdl, us=us)); print(out[-1], flush=True)
        for c in (64, 128, 256, 512, 1024):
            us = median_us(lambda: [td.attention_decode(q, kr[i], vr[i], q_pos, pr, kv0, window=W, chunk=c)
                                    for i, q in enumerate(qs)])
            out.append(dict(kind="ring", B=B, chunk=c, NS=W // c, pdl=pdl, us=us)); print(out[-1], flush=True)
        us = median_us(lambda: [td.attention_decode(q, ks, vs, q_pos, idx, kv0) for q in qs])
        out.append(dict(kind="compact", B=B, chunk="plan", pdl=pdl, us=us)); print(out[-1], flush=True)
        us = median_us(lambda: [td.attention_decode(q, kr[i], vr[i], q_pos, pr, kv0, window=W) for i, q in enumerate(qs)])
        out.append(dict(kind="ring", B=B, chunk="plan", pdl=pdl, us=us)); print(out[-1], flush=True)
    td.PDL = True
json.dump(out, open(os.environ.get("OUT", ".") + "/split_probe.json", "w"), indent=1)
