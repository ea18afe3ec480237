"""The token-level indexer: scores cached slots for each query and selects the top-k.

Shape legend
    h_kv     [B, T, C]   self-decoder output (the shared K/V side): one indexer key per slot
    h_q      [B, Tq, C]  the query side: the self-decoder output for clsa, the layer's own input
                         for per-layer (yoco-dsa) and every-G-layers (indexcache) indexers
    keys     [B, S, Di]  cached indexer keys, shared by the Hi indexer heads; int8 with
                         k_scale [B, S] fp32 when the cache stores 8-bit keys
    idx      [B, Tq, K]  int32 selected slots, -1 padded

Keys are computed once per token from the self-decoder output, so YOCO's early exit stays exact:
no indexer input depends on cross-decoder states of prompt tokens. Rotary (``indexer_rope="neox"``)
rotates all Di dims in the NeoX half-split layout, at each token's rotary position.

8-bit keys (``indexer_key_bits=8``) are an inference cache format: the cache quantizes each slot's
key on write (int8 + one fp32 scale, ``clsa.ops.indexer_topk.quant``) and ``forward`` scores the
int8 keys with ``k_scale``. Without a cache (training, the full forward, the distillation student
``scores``) the keys stay unquantized, in full precision; a cached decode with 8-bit keys therefore
routes with slightly perturbed scores, and equals the full forward only where that perturbation
leaves the top-k set unchanged.
"""

from __future__ import annotations

import math

from torch import nn

from clsa import ops
from clsa.model.layers import RMSNorm, Rope


class Indexer(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config
        self.heads, self.head_dim = c.indexer_heads, c.indexer_head_dim
        self.scoring, self.index_top_k = c.indexer_scoring, c.index_top_k
        self.use_rope, self.theta = c.indexer_rope == "neox", c.rope_theta
        self.query_chunk = c.query_chunk_size
        self.q_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.k_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.wq = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=False)
        self.wk = nn.Linear(c.hidden_size, self.head_dim, bias=False)
        # Per-head weights only matter with several heads or ReLU scoring (DSA); kept for every
        # configuration so checkpoints of one shape share one layout.
        self.w_head = nn.Linear(c.hidden_size, self.heads, bias=False) if self.scoring == "relu" else None
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def keys(self, h_kv, rope):
        k, _ = ops.norm_linear(h_kv, self.k_norm.weight, self.k_norm.eps, self.wk.weight)
        return Rope.of(rope, self.theta)(k) if self.use_rope else k

    def queries(self, h_q, rope):
        B, T, _ = h_q.shape
        n = self.q_norm
        q, _ = ops.norm_linear(h_q, n.weight, n.eps, self.wq.weight)  # one launch at decode
        q = q.view(B, T, self.heads, self.head_dim)
        if self.use_rope:
            q = Rope.of(rope, self.theta)(q)
        w = None
        if self.w_head is not None:
            w = ops.norm_linear(h_q, n.weight, n.eps, self.w_head.weight)[0] / math.sqrt(self.heads)
        return q, w

    def scores(self, h_q, rope, q_pos, kv_start, keys):
        """Full score rows [B, Tq, S] (fp32, -inf where invisible): the distillation student.
        ``rope``: a Rope or the positions [B, Tq] of the queries."""
        q, w = self.queries(h_q, rope)
        return ops.indexer_scores(q, keys, w, q_pos, kv_start, self.scoring, self.scale)

    def forward(self, h_q, rope, q_pos, kv_start, keys, k_scale=None):
        """Top-k slots per query: [B, Tq, top_k] int32, -1 padded. One call = one routing pass.
        ``k_scale`` [B, S] fp32: ``keys`` are a cache's int8 keys, the key of slot j being
        keys[:, j] * k_scale[:, j]."""
        q, w = self.queries(h_q, rope)
        return ops.indexer_topk(q.detach(), keys.detach(), None if w is None else w.detach(),
                                q_pos, kv_start, self.index_top_k, self.scoring, self.scale,
                                query_chunk=self.query_chunk, k_scale=k_scale)
