"""Held-out perplexity through the model's own forward, sparse routing exactly as at inference.

Format legend (the trainer's packing, without shuffling)
    stream      every document's tokens followed by <eos>, documents in the given order
    window k    stream[k*T : k*T + T + 1], T = seq_len: input = window[:-1], targets = window[1:]
                (consecutive windows share one token, so each stream token after the first is a
                target exactly once); the last window may be shorter
    nll         mean negative log-likelihood per target token, nats; ppl = exp(nll)

The forward is ``model(input_ids, use_cache=False)``: for the sparse variants every query selects
its own top-k through the indexer, the path inference takes; nothing is densified. Windows of one
length are batched without padding, so no masking question arises.

    from clsa.eval import perplexity, load_checkpoint
    model, tok = load_checkpoint("runs/tiny/model")
    perplexity(model, tok, val_docs, seq_len=1024, batch_size=4, max_tokens=65536)
    # {"nll": 1.23, "ppl": 3.42, "tokens": 65536, "windows": 64, "seq_len": 1024}
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

from clsa.eval.checkpoint import as_tokenizer
from clsa.train.corpus import DataError, Document


def token_stream(docs: Iterable, tokenizer, max_tokens: int) -> list[int]:
    """The first ``max_tokens`` + 1 tokens of the stream (documents encoded lazily, in order)."""
    tok = as_tokenizer(tokenizer)
    stream: list[int] = []
    for d in docs:
        text = d.text if isinstance(d, Document) else d
        stream += tok.encode(text) + [tok.eos_id]
        if len(stream) > max_tokens:
            break
    return stream[:max_tokens + 1]


def windows(stream: list[int], seq_len: int) -> list[list[int]]:
    """Windows of at most seq_len + 1 tokens sharing one token with the next (see the legend)."""
    return [stream[s:s + seq_len + 1] for s in range(0, len(stream) - 1, seq_len)]


@torch.no_grad()
def perplexity(model, tokenizer, docs, seq_len: int, batch_size: int, max_tokens: int) -> dict:
    """Perplexity of ``model`` on ``docs`` (Documents or strings) over at most ``max_tokens``
    target tokens: dict(nll, ppl, tokens, windows, seq_len). See the module legend."""
    if seq_len < 1 or batch_size < 1 or max_tokens < 1:
        raise DataError(f"seq_len={seq_len}, batch_size={batch_size}, max_tokens={max_tokens} "
                        "must all be >= 1")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and seq_len > limit:
        raise DataError(f"seq_len={seq_len} exceeds the model's max_position_embeddings={limit}")
    stream = token_stream(docs, tokenizer, max_tokens)
    if len(stream) < 2:
        raise DataError("perplexity needs at least 2 tokens of text; the documents are empty")
    wins = windows(stream, seq_len)
    device = next(model.parameters()).device
    by_len: dict[int, list[list[int]]] = {}
    for w in wins:
        by_len.setdefault(len(w), []).append(w)
    total, count = 0.0, 0
    for length, group in by_len.items():
        for s in range(0, len(group), batch_size):
            batch = torch.tensor(group[s:s + batch_size], dtype=torch.long, device=device)
            logits = model(batch[:, :-1], use_cache=False).logits.float()  # [b, L-1, V]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                  reduction="sum")
            total += nll.item()
            count += batch[:, 1:].numel()
    nll = total / count
    return {"nll": nll, "ppl": math.exp(nll), "tokens": count, "windows": len(wins),
            "seq_len": seq_len}


__all__ = ["perplexity", "token_stream", "windows"]
