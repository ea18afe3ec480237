"""Throughput at the largest batch that fits, time to first token, and cache memory (GPU).

    throughput  per (variant, backend) and context: the largest batch whose static cache fits in
                the GPU memory left after the weights (minus a margin), then the graph-replayed
                decode step at that batch: tokens/s = B / step time.
    prefill     time to first token of one prompt: the model's own prefill (YOCO: chunked
                self-decoder, early exit; dense: one flash-causal pass), CUDA events, median of 3
                after a warm-up run (which compiles kernels) and an emptied allocator pool.
    memory      the allocator's bytes for a static cache of B sequences at context N, next to the
                computed figure from clsa.model.memory.
"""

from __future__ import annotations

import gc

import torch

from clsa import ops
from clsa.model.memory import cache_report

MARGIN = 4 << 30  # activations, scratch, graph pools


def _free_bytes() -> int:
    gc.collect()
    if not torch.cuda.is_available():
        return 0
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info()[0]


def max_batch(config, context: int, cap: int = 512) -> int:
    per_seq = cache_report(config, 2).per_sequence(context + 1)
    return max(0, min(cap, (_free_bytes() - MARGIN) // per_seq))


def throughput(model, backend: str, context: int, log=print) -> dict:
    from clsa.bench.decode import time_step

    if model.device.type != "cuda":  # --quick on CPU: a fixed small batch, wall-clock timing
        from clsa.bench.suite import _cpu_time
        ms = _cpu_time(model, backend, 2, context)
        return {"B": 2, "step_ms": ms, "tokens_per_s": 2 / (ms * 1e-3)}
    B = max_batch(model.config, context)
    if B == 0:
        return {"B": 0, "reason": "not even one sequence fits"}
    while B > 0:
        try:
            ms = time_step(model, backend, B, context, rep=50)
            return {"B": B, "step_ms": ms, "tokens_per_s": B / (ms * 1e-3)}
        except torch.OutOfMemoryError:
            log(f"OOM at B={B}, retrying smaller")
            B = int(B * 0.85)
            _free_bytes()  # the failed attempt's cache lives on in reference cycles until collected
    return {"B": 0, "reason": "out of memory"}


def cache_memory(model, batch: int, context: int) -> dict:
    from clsa.engine import Decoder

    _free_bytes()  # collect graph pools of earlier timings first
    gpu = model.device.type == "cuda"
    before = torch.cuda.memory_allocated() if gpu else 0
    dec = Decoder(model, batch, context, cuda_graph=False)
    if gpu:
        measured = torch.cuda.memory_allocated() - before
    else:  # the bytes of every buffer the cache allocated
        measured = sum(b.numel() * b.element_size() for b in dec.cache.buffers())
    elem = next(model.parameters()).element_size()
    del dec
    return {"B": batch, "N": context, "measured_bytes": measured,
            "computed_bytes": batch * cache_report(model.config, elem).per_sequence(context)}


@torch.no_grad()
def time_to_first_token(model, backend: str, context: int, reps: int = 3) -> float:
    from clsa.engine import Decoder

    ids = torch.randint(0, model.config.vocab_size, (1, context), device=model.device)
    if model.device.type != "cuda":
        import time
        with ops.use_backend(backend):
            Decoder(model, 1, context + 1, cuda_graph=False).prefill(ids)  # warm-up
            t = time.perf_counter()
            Decoder(model, 1, context + 1, cuda_graph=False).prefill(ids)
            return (time.perf_counter() - t) * 1e3
    times = []
    chunk = model.config.self_decoder_chunk
    # dense: the whole prompt in one flash-causal pass (its best stock path); YOCO: the
    # self-decoder in 16K-token chunks over its ring buffers, then the cross-decoder for one token
    model.config.self_decoder_chunk = context if not model.config.is_yoco else 16384
    # an allocator left fragmented by earlier rows would put cudaMalloc/cudaFree (each a device
    # sync) inside the timed prefill: start every row from an empty cache pool
    gc.collect()
    torch.cuda.empty_cache()
    with ops.use_backend(backend):
        for _ in range(reps + 1):  # the first run compiles kernels
            dec = Decoder(model, 1, context + 1, cuda_graph=False)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            dec.prefill(ids)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
            del dec
    model.config.self_decoder_chunk = chunk
    return sorted(times[1:])[len(times[1:]) // 2]
