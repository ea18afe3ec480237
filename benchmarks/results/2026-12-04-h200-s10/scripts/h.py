"""Session 10 call H (H200): the dense decode kernel's long-span split count. Old plan
NS = ceil(4 * SMs / groups) (B = 4: 17, B = 8: 9 -> a second, nearly empty wave of programs) against
the new floor (16, 8), two waves (32, 16) and the cap 64, at 128K, B = 1, 4, 8 (graph-replayed
medians, SDPA over the same cache beside it); then the decode step of the dense-attention rows
(yoco/triton, dense/triton) at 128K under the old and the new plan, alternating."""
import gc, json, sys
import torch
import triton
from clsa.bench.decode import build_model, time_step
from clsa.bench.env import environment
from clsa.bench.suite import Row, config_for
from clsa.ops.attention import naive
from clsa.ops.attention import triton_decode as td
from clsa.ops.attention.bench import SDPA, median_us
from clsa.testing import assert_close

out = sys.argv[1]
env = environment()
def log(rec):
    print("rec", json.dumps(rec), flush=True)
    with open(f"{out}/h.jsonl", "a") as f:
        f.write(json.dumps(dict(rec, env=env)) + "\n")

S, Hq, Hkv, D = 131072, 24, 8, 128
sms = td._num_sms(torch.device("cuda"))
for B in (1, 4, 8):
    q = torch.randn(B, 1, Hq, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(B, S, Hkv, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    q_pos = torch.full((B, 1), S - 1, dtype=torch.long, device="cuda")
    k_pos = torch.arange(S, device="cuda").expand(B, S).contiguous()
    kv_start = torch.zeros(B, dtype=torch.long, device="cuda")
    ref = naive.attention(q[:1].float(), k[:1].float(), v[:1].float(), q_pos[:1], k_pos[:1], kv_start[:1])
    g, nb = B * Hkv, S // 64
    cands = sorted({min(64, -(-4 * sms // g)), min(64, 4 * sms // g), min(64, 8 * sms // g), 64})
    rec = dict(B=B, sdpa=median_us(lambda: SDPA(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), enable_gqa=True)))
    for ns in cands:
        chunk = triton.cdiv(nb, ns) * 64
        o = td.attention_decode(q, k, v, q_pos, k_pos, kv_start, chunk=chunk)
        assert_close(o[:1].float(), ref, low_precision=SDPA(q[:1].transpose(1, 2), k[:1].transpose(1, 2), v[:1].transpose(1, 2), enable_gqa=True).transpose(1, 2))
        rec[f"ns{ns}"] = median_us(lambda: td.attention_decode(q, k, v, q_pos, k_pos, kv_start, chunk=chunk))
    rec["plan_ns"] = td.split_plan(g, S, 64, q.device)[1]
    rec["GB"] = 2 * B * S * Hkv * D * 2 / 1e9
    log(rec)
    del q, k, v, k_pos; gc.collect(); torch.cuda.empty_cache()

new_plan = td.split_plan
def old_plan(n_groups, S, block, device, max_splits=td.MAX_SPLITS):
    n_blocks = triton.cdiv(S, block)
    if n_blocks <= td.SHORT_BLOCKS:
        return new_plan(n_groups, S, block, device, max_splits)
    want = max(1, min(max_splits, triton.cdiv(4 * td._num_sms(device), n_groups), n_blocks))
    chunk = triton.cdiv(n_blocks, want) * block
    return chunk, triton.cdiv(S, chunk)
for variant in ("yoco", "dense"):
    model = build_model(config_for("yoco-3b", Row(variant, "triton")))
    for rnd in range(2):
        for name, plan in (("old", old_plan), ("new", new_plan)):
            td.split_plan = plan
            for B in (1, 8):
                ms = time_step(model, "triton", B, 131072, rep=300)
                gc.collect(); torch.cuda.empty_cache()
                log(dict(row=f"{variant}/triton", plan=name, round=rnd, B=B, step_ms=ms))
    td.split_plan = new_plan
    del model; gc.collect(); torch.cuda.empty_cache()
