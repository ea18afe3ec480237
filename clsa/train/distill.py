"""Indexer objectives: KL from the dense attention to the indexer, and the indexer's recall.

Shape legend
    p     [B, C, S] fp32   target: head-averaged dense attention probabilities of the cross layers
                           an indexer serves, averaged over those layers, L1-normalised over keys;
                           0 where a key is invisible. C = query rows of one chunk, S = T keys.
    s     [B, C, S] fp32   indexer scores (student logits), -inf where a key is invisible
    sel   [B, C, K] int64  selected slots, -1 padded: the sparse forward's top-k (sparse stage)
                           or the top-k of ``s`` (distill stage, for the recall only)

distill (DSA warm-up, IndexCache multi-layer distillation):
    KL(p || softmax(s)) = sum_j p_j (log p_j - log softmax(s)_j) over visible keys j
sparse (DSA stage 2): the same KL with p and s restricted to the selected set, p renormalised
over it and softmax taken over it.
recall = sum of p over the top-k keys, over rows with more than k visible keys (rows with at most
k visible select every key, so their recall is trivially 1; they are counted apart, not averaged).

The indexer's inputs are detached (the target comes from ``cross_states`` under no_grad), so these
losses train only the indexer parameters. Query rows are chunked so the [B, H, C, S] attention
logits stay within ``CHUNK_ELEMENTS`` floats; each chunk's loss is backpropagated at once.
"""

from __future__ import annotations

import torch

from clsa.model.backbone import attention_probs

CHUNK_ELEMENTS = 1 << 25  # 128 MiB of fp32 attention logits per chunk


def served_layers(config) -> dict[int, list[int]]:
    """Indexer id (first cross layer it serves) -> the cross layers whose top-k it provides."""
    starts = sorted(config.indexer_layers())
    ends = starts[1:] + [config.num_cross_layers]
    return {s: list(range(s, e)) for s, e in zip(starts, ends)}


def target_layers(config, j: int | None) -> dict[int, list[int]]:
    """The layers each indexer is distilled against: all it serves, or only the j-th of them."""
    served = served_layers(config)
    if j is None:
        return served
    fewest = min(len(v) for v in served.values())
    if j >= fewest:
        raise ValueError(f"TrainArgs.distill_target='layer:{j}' is invalid: an indexer of this "
                         f"{config.attention_variant} model serves only {fewest} layer(s); allowed "
                         f"layer:0 .. layer:{fewest - 1}, or 'all'")
    return {i: [layers[j]] for i, layers in served.items()}


def row_chunk(batch: int, seq: int, heads: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Query rows per chunk so that batch * heads * rows * seq <= budget (at least one row)."""
    return max(1, min(seq, budget // max(1, batch * heads * seq)))


def kl_rows(p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """KL(p || softmax(s)) per row, [B, C]; keys with s = -inf must have p = 0 and are skipped."""
    log_q = torch.log_softmax(s, dim=-1).masked_fill(torch.isinf(s), 0.0)
    return (torch.special.xlogy(p, p) - p * log_q).sum(-1)


def _target(backbone, states, layers, rows) -> torch.Tensor:
    # .float(): under bf16 autocast the softmax may come back in bf16; normalise in fp32.
    p = sum(attention_probs(backbone, states, layer, rows).float() for layer in layers)
    return p / p.sum(-1, keepdim=True).clamp_min(1e-30)


def indexer_objective(backbone, states, layers_by_indexer: dict, top_k: int, *,
                      scale: float = 0.0, selected: dict | None = None,
                      queries: dict | None = None, chunk: int | None = None) -> dict:
    """KL and recall sums over every query row of every indexer; backpropagates when scale > 0.

    ``states``: CrossStates from ``cross_states`` (no_grad). ``selected``: indexer id ->
    idx [B, T, K] of the sparse forward (switches to the selected-set KL). ``queries``: indexer
    id -> (h_q, positions, q_pos, kv_start) the indexer saw in that forward (default: from
    ``states``). Each chunk's ``scale * sum of row KLs`` is backpropagated into the indexer.
    Returns float sums: kl, rows, recall, recall_rows, trivial_rows.
    """
    config = backbone.config
    indexers = backbone.indexers()
    B, T = states.positions.shape
    heads = config.num_attention_heads
    chunk = chunk or row_chunk(B, T, heads)
    out = dict(kl=0.0, rows=0.0, recall=0.0, recall_rows=0.0, trivial_rows=0.0)
    train = scale > 0
    for i, layers in layers_by_indexer.items():
        ix = indexers[i]
        if queries is not None:
            h_q, positions, q_pos, kv_start = queries[i]
        else:
            h_q = states.h_sd if config.attention_variant == "clsa" else states.inputs[i]
            positions, q_pos, kv_start = states.positions, states.q_pos, states.kv_start
        h_q = h_q.detach()
        with torch.set_grad_enabled(train):
            keys = ix.keys(states.h_sd.detach(), states.positions)
        # Chunks backpropagate into a detached copy of the keys; the key projection then gets
        # the summed gradient in one backward, so no chunk's graph is kept alive.
        keys_leaf = keys.detach().requires_grad_(train)
        for start in range(0, T, chunk):
            rows = slice(start, min(start + chunk, T))
            with torch.no_grad():
                p = _target(backbone, states, layers, rows)
            with torch.set_grad_enabled(train):
                s = ix.scores(h_q[:, rows], positions[:, rows], q_pos[:, rows], kv_start,
                              keys_leaf).float()
                visible = torch.isfinite(s).sum(-1)  # [B, C]
                if selected is None:
                    sel = s.detach().topk(min(top_k, T), dim=-1).indices if top_k < T else None
                    kl = kl_rows(p, s)
                else:
                    sel = selected[i][:, rows].long()
                    valid = sel >= 0
                    g = sel.clamp_min(0)
                    p_sel = p.gather(-1, g) * valid
                    p_sel = p_sel / p_sel.sum(-1, keepdim=True).clamp_min(1e-30)
                    kl = kl_rows(p_sel, s.gather(-1, g).masked_fill(~valid, float("-inf")))
                if train:
                    (kl.sum() * scale).backward()
            out["kl"] += float(kl.detach().sum())
            out["rows"] += kl.numel()
            hard = visible > top_k
            out["trivial_rows"] += float((~hard).sum())
            if sel is not None and bool(hard.any()):
                mass = (p.gather(-1, sel.clamp_min(0)) * (sel >= 0)).sum(-1)
                out["recall"] += float(mass[hard].sum())
                out["recall_rows"] += float(hard.sum())
        if train and keys_leaf.grad is not None:
            keys.backward(keys_leaf.grad)
    return out
