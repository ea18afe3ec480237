"""`clsa demo`: the main job on embedded defaults.

Builds the five variants at one small shape with the same seed, checks that each one's cached
decoding equals its full forward, and prints a side-by-side table of parameters, cache bytes per
token, selected share of the context and CPU decode tokens/s, plus the yoco-3b cache arithmetic.
"""

from __future__ import annotations

import time

import torch

from clsa.config import VARIANTS, CLSAConfig
from clsa.model import CLSAForCausalLM
from clsa.model.memory import cache_report


def run_demo(preset: str = "tiny", context: int = 512, new_tokens: int = 32, seed: int = 0) -> list[dict]:
    rows = []
    for v in VARIANTS:
        torch.manual_seed(seed)
        cfg = CLSAConfig.from_name(preset, attention_variant=v, index_refresh_every=4 if v == "indexcache" else 1)
        model = CLSAForCausalLM(cfg).eval()
        ids = torch.randint(0, cfg.vocab_size, (1, context))
        with torch.no_grad():
            full = model(ids, use_cache=False).logits[:, -8:]
            cache = model.new_cache(1)
            inc = [model(ids[:, :-8], cache=cache, logits_to_keep=1).logits]
            inc += [model(ids[:, t:t + 1], cache=cache).logits for t in range(context - 8, context)]
            err = (torch.cat(inc[1:], 1) - full).abs().max().item()
            nxt = full[:, -1:].argmax(-1)
            for _ in range(4):  # warm-up: first calls pay one-off CPU kernel setup
                nxt = model(nxt, cache=cache).logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(new_tokens):
                nxt = model(nxt, cache=cache).logits[:, -1:].argmax(-1)
            tps = new_tokens / (time.perf_counter() - start)
        rows.append(dict(variant=v, params=sum(p.numel() for p in model.parameters()),
                         cache_per_token=cache_report(cfg, 2).per_token,
                         selected=min(1.0, cfg.index_top_k / context) if cfg.is_sparse else 1.0,
                         decode_equals_forward_max_err=err, cpu_tokens_per_s=tps))
    return rows


def main(args) -> int:
    rows = run_demo(args.preset, args.context, args.new_tokens)
    print(f"{'variant':<11} {'params':>10} {'cache B/token':>14} {'attended':>9} "
          f"{'decode==forward':>16} {'CPU tok/s':>10}")
    for r in rows:
        print(f"{r['variant']:<11} {r['params']:>10,} {r['cache_per_token']:>14,} {r['selected']:>8.0%} "
              f"{r['decode_equals_forward_max_err']:>16.1e} {r['cpu_tokens_per_s']:>10.1f}")
    print("\nyoco-3b shape, bf16 cache bytes per token:")
    for v in VARIANTS:
        cfg = CLSAConfig.from_name("yoco-3b", attention_variant=v, index_refresh_every=4 if v == "indexcache" else 1)
        r = cache_report(cfg)
        print(f"  {v:<11} {r.per_token / 1024:7.2f} KiB/token, {r.per_sequence(131072) / 2**30:6.2f} GiB per 128K sequence")
    bad = [r["variant"] for r in rows if r["decode_equals_forward_max_err"] > 1e-3]
    if bad:
        print(f"cached decoding disagrees with the full forward for {bad}")
        return 1
    return 0
