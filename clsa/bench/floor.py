"""Bytes a decode step must move from HBM, and the copy bandwidth that turns them into a floor.

floor_ms = (weights read + cache bytes read) / copy bandwidth measured in the same run.
Counted per step for batch B at context N (bf16 = 2 bytes):
    weights     every parameter once, the embedding table only for its B rows (unless tied to
                the LM head, which reads it whole)
    dense       every layer reads its own K/V: L * 2 * B * N * Hkv * D * 2 (swa: min(N, W) rows)
    yoco*       each self-decoder layer reads its window: Ls * 2 * B * W * Hkv * D * 2
    yoco        + every cross layer reads the whole shared K/V: Lc * 2 * B * N * Hkv * D * 2
    sparse      + per indexer call: the indexer keys B * N * Di * 2 (8-bit keys: B * N * (Di + 4),
                int8 entries and an fp32 scale per slot) and one gather of the K selected rows
                2 * B * K * Hkv * D * 2 (the compact buffer the layers then re-read stays in L2
                and is not counted: a lower bound)
"""

from __future__ import annotations

import torch

from clsa.model.memory import indexer_key_bytes


def weight_bytes(model, batch_size: int) -> int:
    c = model.config
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.model.embed_tokens.weight
    if not c.tie_word_embeddings:  # the input table is only gathered for B rows
        total -= emb.numel() * emb.element_size() - batch_size * emb.shape[1] * emb.element_size()
    return total


def cache_bytes_read(config, batch_size: int, context: int, elem: int = 2) -> int:
    c, B, N = config, batch_size, context
    row = 2 * c.num_key_value_heads * c.head_dim * elem
    if not c.is_yoco:
        return c.num_hidden_layers * B * min(N, c.layer_window or N) * row
    total = c.num_self_layers * B * min(c.sliding_window, N) * row
    if not c.is_sparse:
        return total + c.num_cross_layers * B * N * row
    calls = len(c.indexer_layers())
    k = min(c.index_top_k, N)
    return total + calls * (B * N * indexer_key_bytes(c, elem) + B * k * row)


def copy_bandwidth(nbytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), median of do_bench."""
    from triton.testing import do_bench

    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), rep=200, return_mode="median")
    del a, b
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3)
