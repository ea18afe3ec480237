"""Decode-step timing of one (variant, backend) at batch B and context N, CUDA graphs on.

The static cache is allocated with exactly N + 1 slots and filled with random values (speed does
not depend on them), as if N tokens had been prefilled; the timed step writes slot N and reads
the whole context. The step is captured together with ``pos -= 1`` so replays are idempotent.
"""

from __future__ import annotations

import torch

from clsa import ops
from clsa.config import CLSAConfig
from clsa.engine import Decoder
from clsa.model import CLSAForCausalLM
from clsa.model.cache import QuantKeys


def build_model(config: CLSAConfig, device="cuda", dtype=torch.bfloat16):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = CLSAForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def fill_cache(cache, context: int, seed: int = 0) -> None:
    """Pretend ``context`` tokens were prefilled: random K/V, ring buffers holding the last W."""
    g = torch.Generator(device=cache.device).manual_seed(seed)

    def rand_(t):  # in place, in the cache's dtype: no temporary the size of a 1M-token cache
        t.normal_(generator=g)

    for layer in cache.layers:
        if hasattr(layer, "pos"):  # ring buffer
            rand_(layer.k), rand_(layer.v)
            w = layer.window
            slots = torch.arange(max(context - w, 0), context, device=cache.device)
            layer.pos.fill_(-1)
            layer.pos[slots % w] = slots
        else:
            rand_(layer.k.buf), rand_(layer.v.buf)
    if cache.shared is not None:
        rand_(cache.shared.k.buf), rand_(cache.shared.v.buf)
    for keys in cache.index_keys.values():
        if isinstance(keys, QuantKeys):  # 8-bit: int8 entries and positive per-slot scales
            keys.k.buf.random_(-127, 128, generator=g)
            keys.scale.buf.uniform_(0.5 / 127, 4 / 127, generator=g)
        else:
            rand_(keys.buf)
    cache.seen = context
    cache.pos.fill_(context)
    cache.kv_start.zero_()
    cache.all_visible = True


def decode_step_fn(model, batch_size: int, context: int, seed: int = 0):
    """A callable running one idempotent decode step (logits [B, V]) and its Decoder."""
    dec = Decoder(model, batch_size, context + 1, cuda_graph=False)
    fill_cache(dec.cache, context, seed)
    dec._tok.copy_(torch.randint(0, model.config.vocab_size, (batch_size, 1), device=dec._tok.device))

    def step():
        out = dec._body()
        dec.cache.pos.sub_(1)
        dec.cache.seen -= 1
        return out
    return step, dec


def time_step(model, backend: str, batch_size: int, context: int, rep: int = 200) -> float:
    """Median milliseconds of one graph-replayed decode step."""
    from triton.testing import do_bench_cudagraph

    with ops.use_backend(backend):
        step, _ = decode_step_fn(model, batch_size, context)
        for _ in range(2):  # compile kernels before capture
            step()
        torch.cuda.synchronize()
        return do_bench_cudagraph(step, rep=rep, return_mode="median")
