"""The loss of each training stage, for one micro-batch: backward (training) or not (validation).

Shape legend: input_ids, labels [B, T] int64 (labels already shifted by PackedStream, -100 where
not trained); logits [B, T, V] fp32.

Every objective returns float SUMS (summed over ranks by the trainer, then turned into means by
``summarize``), so logged numbers are exact global means whatever the world size:
    ce, tokens                    LM cross-entropy summed over trained tokens, their count; both
                                  weighted by ``token_weights`` (synthetic_weight on the answer
                                  tokens of synthetic rows, 1 elsewhere)
    ce_answer, answer_tokens      unweighted cross-entropy and count of synthetic answer tokens
    kl, rows                      indexer KL summed over query rows (of every indexer), rows
    recall, recall_rows           target mass inside the top-k, over rows with > k visible keys
    trivial_rows                  rows with <= k visible keys (recall 1 by construction)

Scaling: the LM loss of a micro-batch is ce * world / global_tokens, so DDP's gradient average
gives the token mean over the whole global batch; the indexer KL is scaled by
1 / (B * T * indexers * grad_accum) and its gradients are averaged over ranks.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from clsa.model.backbone import cross_states
from clsa.train.distill import indexer_objective, target_layers


def token_weights(batch, synthetic_weight: float):
    """[B, T] fp32 loss weight per label: 0 where not trained, ``synthetic_weight`` on the trained
    tokens of synthetic rows, 1 on text. A synthetic answer is a handful of tokens beside whole
    text rows, so a weight above 1 keeps retrieval from drowning in the LM loss."""
    trained = (batch["labels"] != -100).float()
    if synthetic_weight == 1.0:
        return trained
    row = torch.where(batch["synthetic"], synthetic_weight, 1.0).to(trained.device)
    return trained * row[:, None]


class Objective:
    """Training and validation losses of ``stage`` for one model."""

    def __init__(self, stage: str, raw, forward, args, world_size: int, autocast):
        self.stage, self.raw, self.forward, self.args = stage, raw, forward, args
        self.world_size, self.autocast = world_size, autocast
        self.config = raw.config
        self.captured: dict = {}
        self.layers = None
        if stage in ("distill", "sparse"):
            # distill_target picks the layers of the distill KL; the sparse stage always uses all.
            j = args.target_layer if stage == "distill" else None
            self.layers = target_layers(self.config, j)
        if stage == "sparse":
            for i, ix in raw.model.indexers().items():
                ix.register_forward_pre_hook(self._capture(i))

    def _capture(self, i):
        def hook(module, inputs):
            h_q, rope, q_pos, kv_start = inputs[:4]
            # The model passes rotary tables (an object with .positions) or plain positions.
            self.captured[i] = (h_q.detach(), getattr(rope, "positions", rope), q_pos, kv_start)
        return hook

    def _lm(self, batch, scale: float | None) -> dict:
        with self.autocast():
            logits = self.forward(batch["input_ids"], use_cache=False).logits
        labels = batch["labels"]
        per = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                              ignore_index=-100, reduction="none").view(labels.shape)
        w = token_weights(batch, self.args.synthetic_weight)
        ce = (per * w).sum()
        if scale is not None:
            (ce * scale).backward()
        # Every rank reports the same keys (they are summed across ranks), answers or not.
        answers = (labels != -100) & batch["synthetic"].to(labels.device)[:, None]
        return {"ce": float(ce.detach()), "tokens": float(w.sum()),
                "ce_answer": float(per.detach()[answers].sum()), "answer_tokens": float(answers.sum())}

    def _indexer(self, batch, scale: float, selected) -> dict:
        with torch.no_grad(), self.autocast():
            states = cross_states(self.raw.model, batch["input_ids"])
        queries = self.captured if selected is not None else None
        with self.autocast():
            return indexer_objective(self.raw.model, states, self.layers, self.config.index_top_k,
                                     scale=scale, selected=selected, queries=queries)

    def _kl_scale(self, batch, weight: float) -> float:
        B, T = batch["input_ids"].shape
        return weight / (B * T * len(self.layers) * self.args.grad_accum)

    def step(self, batch, global_tokens: float, sync=contextlib.nullcontext) -> dict:
        """Forward and backward of one training micro-batch. ``sync``: DDP's no_sync or not."""
        if self.stage == "distill":
            return self._indexer(batch, self._kl_scale(batch, 1.0), None)
        with sync():
            out = self._lm(batch, self.world_size / max(global_tokens, 1.0))
        if self.stage == "sparse":
            selected = {i: self.raw.model.last_routing.indices[i] for i in self.layers}
            out.update(self._indexer(batch, self._kl_scale(batch, self.args.kl_weight), selected))
        return out

    @torch.no_grad()
    def evaluate(self, batch) -> dict:
        if self.stage == "distill":
            return self._indexer(batch, 0.0, None)
        out = self._lm(batch, None)
        if self.stage == "sparse":
            selected = {i: self.raw.model.last_routing.indices[i] for i in self.layers}
            out.update(self._indexer(batch, 0.0, selected))
        return out

    def summarize(self, sums: dict, prefix: str = "") -> dict:
        """Means from summed metrics: loss (the optimised objective) and stage extras."""
        m = {}
        if "tokens" in sums:
            m["lm_loss"] = sums["ce"] / max(sums["tokens"], 1.0)
        if sums.get("answer_tokens"):
            m["answer_loss"] = sums["ce_answer"] / sums["answer_tokens"]
        if "rows" in sums:
            m["kl"] = sums["kl"] / max(sums["rows"], 1.0)
            m["recall"] = (sums["recall"] / sums["recall_rows"]) if sums["recall_rows"] else None
            m["trivial_rows"] = sums["trivial_rows"] / max(sums["rows"], 1.0)
        if self.stage == "pretrain":
            m["loss"] = m.pop("lm_loss")
        elif self.stage == "distill":
            m["loss"] = m["kl"]
        else:
            m["loss"] = m["lm_loss"] + self.args.kl_weight * m["kl"]
        return {prefix + k: v for k, v in m.items()}
