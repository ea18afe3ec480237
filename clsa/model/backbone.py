"""CLSABackbone: embeddings + the five attention variants' layer stacks, one forward for all.

Shape legend
    input_ids  [B, T] int       T new tokens, at cache slots [seen, seen + T)
    q_pos      [B, T] int       slot of each new token (same for every row)
    positions  [B, T] int       rotary position = slot - kv_start (left padding shifts it)
    kv_start   [B] int          first valid slot per row
    h          [B, T, C]        hidden states; the cross-decoder only sees the kept tail [B, N, C]

dense: every layer is causal self-attention over its own K/V (swa: each over its sliding window).
yoco*: layers [0, num_self_layers) are sliding-window self-attention (the self-decoder); its output
h_sd is normed and projected ONCE to the shared K/V (rotary on K) and to each indexer's keys; the
cross-decoder layers run only on the N positions whose logits are needed (early exit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clsa import ops
from clsa.model.attention import Block, CrossAttention, SelfAttention, settle
from clsa.model.cache import IndexKeys
from clsa.model.indexer import Indexer
from clsa.model.layers import RMSNorm, Rope


@dataclass
class Routing:
    """What the cross-decoder of one forward saw: for tests, diagnostics and distillation."""

    indices: dict  # cross-layer number -> idx [B, N, K] it attended with (absent for dense)
    indexer_calls: int


class CrossBlock(Block):
    def __init__(self, config, owns_indexer: bool):
        super().__init__(config, CrossAttention(config))
        self.indexer = Indexer(config) if owns_indexer else None


class CLSABackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        if not c.is_yoco:
            self.layers = nn.ModuleList(Block(c, SelfAttention(c, c.layer_window))
                                        for _ in range(c.num_hidden_layers))
        else:
            self.layers = nn.ModuleList(Block(c, SelfAttention(c, c.sliding_window))
                                        for _ in range(c.num_self_layers))
            self.kv_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
            self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
            self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
            owners = set(c.indexer_layers()) if c.attention_variant != "clsa" else set()
            self.cross_layers = nn.ModuleList(CrossBlock(c, i in owners) for i in range(c.num_cross_layers))
            # clsa: the one indexer, fed by the self-decoder output, outside every cross layer.
            self.indexer = Indexer(c) if c.attention_variant == "clsa" else None
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.last_routing: Routing | None = None

    def indexers(self) -> dict:
        """Indexer modules by the number of the first cross layer they serve."""
        if self.config.attention_variant == "clsa":
            return {0: self.indexer}
        if not self.config.is_yoco:
            return {}
        return {i: blk.indexer for i, blk in enumerate(self.cross_layers) if blk.indexer is not None}

    def self_decode(self, h, positions, q_pos, kv_start, cache=None):
        """The self-attention stack; returns (x, f), its output being x + f (see Block)."""
        f = None
        for i, layer in enumerate(self.layers):
            h, f = layer(h, positions, q_pos, kv_start, None if cache is None else cache.layers[i],
                         pending=f)
        return h, f

    def final_norm(self, x, f):
        """norm(x + f), the add fused into the norm."""
        return self.norm(x) if f is None else self.norm(f, residual=x)[0]

    def shared_kv(self, x, f, rope):
        """The global K/V of the new tokens: [B, T, Hkv, D] each (rotary on K, none on V), and the
        self-decoder output h_sd = x + f [B, T, C] that the stack left unsummed (see Block)."""
        c = self.config
        B, T, _ = x.shape
        n = self.kv_norm
        # the norm fused into each projection: one launch apiece at decode (the norm is recomputed
        # from the same row, which costs nothing next to the weight it streams); the K projection
        # also does the residual add
        k, h_sd = ops.norm_linear(x if f is None else f, n.weight, n.eps, self.k_proj.weight,
                                  None if f is None else x)
        v, _ = ops.norm_linear(h_sd, n.weight, n.eps, self.v_proj.weight)
        k = Rope.of(rope, c.rope_theta)(k.view(B, T, c.num_key_value_heads, c.head_dim))
        return k, v.view(B, T, c.num_key_value_heads, c.head_dim), h_sd

    def forward(self, input_ids, positions, q_pos, kv_start, cache=None, keep: int | None = None,
                dense_cross: bool = False):
        """Final-normed hidden states of the last ``keep`` positions: None keeps all, 0 none (the
        cache is still filled; YOCO then skips the cross-decoder entirely)."""
        h = self.embed_tokens(input_ids)
        T = h.shape[1]
        n = T if keep is None else min(keep, T)
        positions = Rope.of(positions, self.config.rope_theta)
        if not self.config.is_yoco:
            x, f = self.self_decode(h, positions, q_pos, kv_start, cache)
            if cache is not None:
                cache.advance(T)
            self.last_routing = Routing({}, 0)
            return self.final_norm(x[:, T - n:], None if f is None else f[:, T - n:])
        k, v, h_sd = self.shared_kv(*self.self_decode(h, positions, q_pos, kv_start, cache), positions)
        keys = {i: IndexKeys(ix.keys(h_sd, positions)) for i, ix in self.indexers().items()}
        if cache is None:
            shared = (k, v, q_pos)
        else:  # 8-bit index keys are quantized here, on their way into the cache
            shared = cache.shared.update(k, v, q_pos)
            keys = {i: cache.write_index_keys(i, kk.k, q_pos) for i, kk in keys.items()}
            cache.advance(T)
        if n == 0:
            return h_sd[:, :0]
        tail = slice(T - n, T)
        x, f = self.cross_decode(h_sd[:, tail], positions.slice(tail), q_pos[:, tail], kv_start, shared,
                                 keys, dense_cross)
        return self.final_norm(x, f)

    def cross_decode(self, h, positions, q_pos, kv_start, shared, keys, dense_cross=False):
        """The cross-decoder on input h; returns (x, f), its output being x + f (see Block)."""
        c = self.config
        sparse = c.is_sparse and not dense_cross
        # One query per row (decode): gather the selected rows once per new index, and every
        # layer that reuses the index reads the compact buffer instead of the whole cache; or
        # each layer's kernel gathers the rows from the cache itself (CLSAConfig.decode_gather;
        # "auto": once at batch 1, per layer above, the faster in H200 decode-step profiles).
        mode = c.decode_gather
        if mode == "auto":
            mode = "once" if h.shape[0] == 1 else "per_layer"
        gather_once = sparse and h.shape[1] == 1 and mode == "once"
        idx, gathered, calls, seen, f = None, None, 0, {}, None
        for i, blk in enumerate(self.cross_layers):
            indexer = self.indexer if (i == 0 and self.indexer is not None) else blk.indexer
            # the K/V (and index) this layer reads were written before the previous cross layer's
            # attention began, unless a new index (and gather) comes right before this layer: its
            # attention kernel may then read them while its query projection still runs
            kv_ready = i > 0
            if sparse and indexer is not None:
                kv_ready = False
                h, f = settle(h, f), None  # the indexer reads this layer's input itself
                idx = indexer(h, positions, q_pos, kv_start, keys[i].k, k_scale=keys[i].scale)
                calls += 1
                gathered = None
                if gather_once:
                    k_sel, v_sel = ops.gather_kv(shared[0], shared[1], idx[:, 0])
                    gathered = (k_sel, v_sel, idx[:, 0])
            if sparse:
                seen[i] = idx
            h, f = blk(h, positions, q_pos, kv_start, shared,
                       idx=idx if sparse and not gather_once else None, gathered=gathered, pending=f,
                       kv_ready=kv_ready)
        self.last_routing = Routing(seen, calls)
        return h, f


@dataclass
class CrossStates:
    """Everything a dense pass of the cross-decoder saw, for distillation and routing analysis.

    h_sd [B, T, C] self-decoder output; inputs[i] [B, T, C] the input of cross layer i;
    shared = (k, v, k_pos) the global K/V; keys {indexer id: [B, T, Di]}; positions, q_pos [B, T];
    kv_start [B].
    """

    h_sd: torch.Tensor
    inputs: list
    shared: tuple
    keys: dict
    positions: torch.Tensor
    q_pos: torch.Tensor
    kv_start: torch.Tensor


def cross_states(backbone: CLSABackbone, input_ids, kv_start=None) -> CrossStates:
    """Run a YOCO-family backbone with DENSE cross-attention, recording each cross layer's input."""
    if not backbone.config.is_yoco:
        raise ValueError("cross_states needs a YOCO-family variant (yoco, yoco-dsa, indexcache, clsa)")
    B, T = input_ids.shape
    kv_start = input_ids.new_zeros(B) if kv_start is None else kv_start
    q_pos = torch.arange(T, device=input_ids.device).expand(B, T)
    positions = (q_pos - kv_start[:, None]).clamp_min(0)
    rope = Rope(positions, backbone.config.rope_theta)
    k, v, h_sd = backbone.shared_kv(*backbone.self_decode(backbone.embed_tokens(input_ids), rope, q_pos,
                                                         kv_start), rope)
    keys = {i: ix.keys(h_sd, rope) for i, ix in backbone.indexers().items()}
    inputs, h = [], h_sd
    for blk in backbone.cross_layers:
        inputs.append(h)
        h = settle(*blk(h, rope, q_pos, kv_start, (k, v, q_pos)))
    return CrossStates(h_sd, inputs, (k, v, q_pos), keys, positions, q_pos, kv_start)


def attention_probs(backbone: CLSABackbone, st: CrossStates, layer: int, rows: slice):
    """Dense attention probabilities of cross layer ``layer`` for queries ``rows``, averaged over
    heads: [B, C, T] fp32, zero where a key is not visible. Query-chunked by the caller."""
    from clsa.ops.attention.naive import visible_mask

    blk = backbone.cross_layers[layer]
    attn = blk.attn
    q = attn.queries(blk.attn_norm(st.inputs[layer][:, rows]), st.positions[:, rows])  # [B, C, H, D]
    k = st.shared[0].repeat_interleave(attn.h // attn.hkv, dim=2)  # [B, T, H, D]
    logits = torch.einsum("bchd,bshd->bhcs", q.float(), k.float()) * attn.scale
    m = visible_mask(st.q_pos[:, rows], st.shared[2], st.kv_start, None)
    p = torch.softmax(logits.masked_fill(~m[:, None], float("-inf")), -1).nan_to_num(0.0)
    return p.mean(1)
