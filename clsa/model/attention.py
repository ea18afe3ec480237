"""Attention layers: self-attention with its own K/V, and cross-attention to the shared K/V.

Shape legend
    x          [B, T, C]        layer input
    rope       Rope (or positions [B, T]): rotary tables shared by all layers of a forward
    q_pos      [B, T] int       cache slot of each query
    kv_start   [B] int          first valid slot per sequence (left padding before it)
    k, v       [B, S, Hkv, D];  k_pos [B, S] int (slot of each key row, -1 empty)
    idx        [B, T, K] int32  top-k slots, -1 padded
"""

from __future__ import annotations

import math

from torch import nn

from clsa import ops
from clsa.model.cache import RingKV
from clsa.model.layers import RMSNorm, Rope, SwiGLU


class SelfAttention(nn.Module):
    """GQA attention over the layer's own keys: causal (dense) or a sliding window (YOCO)."""

    def __init__(self, config, window: int | None):
        super().__init__()
        c = config
        self.h, self.hkv, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.window, self.theta, self.chunk = window, c.rope_theta, c.query_chunk_size
        # Q, K and V in one projection: one GEMV per layer at decode instead of three.
        self.qkv_proj = nn.Linear(c.hidden_size, (self.h + 2 * self.hkv) * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, c.hidden_size, bias=False)

    @property
    def in_proj(self) -> nn.Linear:
        """The projection of the layer's input (Block fuses the pre-norm into it)."""
        return self.qkv_proj

    def forward(self, x, rope, q_pos, kv_start, layer_cache=None):
        return self.attend(ops.linear(x, self.qkv_proj.weight), rope, q_pos, kv_start, layer_cache)

    def attend(self, qkv, rope, q_pos, kv_start, layer_cache=None):
        """The layer after its input projection: qkv [B, T, (Hq + 2 Hkv) D] -> [B, T, C]."""
        B, T, _ = qkv.shape
        tables = Rope.of(rope, self.theta).tables(self.d)
        heads = qkv.view(B, T, self.h + 2 * self.hkv, self.d)
        q, k, v = heads[:, :, :self.h], heads[:, :, self.h:self.h + self.hkv], heads[:, :, self.h + self.hkv:]
        scale = 1.0 / math.sqrt(self.d)
        if T == 1 and isinstance(layer_cache, RingKV):
            # decode: one launch writes the token into the ring (K rotated) and attends over it
            o = ops.ring_attention(q, k, v, layer_cache.k, layer_cache.v, layer_cache.pos, q_pos,
                                   kv_start, self.window, scale, rope=tables)
            return ops.linear(o.reshape(B, T, self.h * self.d), self.o_proj.weight)
        # rotary is fused where the kernels allow: the ring write rotates K on its way into the
        # cache and attention rotates Q as it loads it (no rotary launch at decode)
        if layer_cache is None:
            k_all, v_all, k_pos = ops.rotary(k, *tables), v, q_pos
        else:
            k_all, v_all, k_pos = layer_cache.update(k, v, q_pos, rope=tables)
        # the key layout ([ring | own slots]; no cache: own slots only, q_pos contiguous) stated,
        # so windowed prefill need not check it on the values (a host sync per layer)
        ring = 0 if layer_cache is None else layer_cache.ring_rows(T)
        o = ops.attention(q, k_all, v_all, q_pos, k_pos, kv_start, self.window, scale,
                          query_chunk=self.chunk, ring=ring, rope=tables)
        return ops.linear(o.reshape(B, T, self.h * self.d), self.o_proj.weight)


class CrossAttention(nn.Module):
    """YOCO cross-attention: own queries, the one shared K/V; dense or over a top-k index."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.h, self.hkv, self.d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.theta, self.chunk = c.rope_theta, c.query_chunk_size
        self.scale = 1.0 / math.sqrt(self.d)
        self.q_proj = nn.Linear(c.hidden_size, self.h * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, c.hidden_size, bias=False)

    @property
    def in_proj(self) -> nn.Linear:
        return self.q_proj

    def queries(self, x, rope):
        B, T, _ = x.shape
        return Rope.of(rope, self.theta)(ops.linear(x, self.q_proj.weight).view(B, T, self.h, self.d))

    def forward(self, x, rope, q_pos, kv_start, shared, idx=None, gathered=None, kv_ready=False):
        """shared = (k, v, k_pos) of the whole cache; gathered = (k_sel, v_sel, sel_pos) at decode."""
        return self.attend(ops.linear(x, self.q_proj.weight), rope, q_pos, kv_start, shared, idx,
                           gathered, kv_ready)

    def attend(self, q, rope, q_pos, kv_start, shared, idx=None, gathered=None, kv_ready=False):
        """The layer after its input projection: q [B, T, Hq D] (before rotary) -> [B, T, C].
        ``kv_ready``: the K/V it reads (and the index) were written before the layer's input
        projection began (``ops.attention``'s scheduling hint)."""
        B, T, _ = q.shape
        tables = Rope.of(rope, self.theta).tables(self.d)
        q = q.view(B, T, self.h, self.d)  # unrotated: ops.attention rotates it as it loads it
        if gathered is not None:  # decode: attend over the compact buffer gathered once per step
            k_sel, v_sel, sel_pos = gathered
            o = ops.attention(q, k_sel, v_sel, q_pos, sel_pos, kv_start, None, self.scale,
                              query_chunk=self.chunk, rope=tables, kv_ready=kv_ready)
        elif idx is not None:
            o = ops.sparse_attention(q, shared[0], shared[1], idx, self.scale,
                                     query_chunk=self.chunk, rope=tables, kv_ready=kv_ready)
        else:
            o = ops.attention(q, shared[0], shared[1], q_pos, shared[2], kv_start, None, self.scale,
                              query_chunk=self.chunk, rope=tables, kv_ready=kv_ready)
        return ops.linear(o.reshape(B, T, self.h * self.d), self.o_proj.weight)


def settle(x, f):
    """The hidden state x + f that a block stack left as (x, f); x when nothing is pending."""
    return x if f is None else x + f


class Block(nn.Module):
    """Pre-RMSNorm residual block: attention then SwiGLU.

    ``forward(x, ..., pending=f)`` returns ``(x, f)``: the block's output is ``x + f``, left
    unsummed. The next block's first norm adds it in its own pass (fused add + RMSNorm), so a stack
    launches no separate residual add. ``settle(x, f)`` sums it where a plain tensor is needed.
    Each norm is fused into the projection that reads it (``ops.norm_linear``), and the SwiGLU
    gate into the down projection (``ops.silu_mul_linear``): at decode a block is four launches of
    weight-streaming kernels plus its attention, with no elementwise pass of its own.
    """

    def __init__(self, config, attn: nn.Module):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = attn
        self.ffn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.ffn = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x, *args, pending=None, **kwargs):
        n, p = self.attn_norm, self.attn.in_proj
        # the previous block's FFN output joins the residual stream here, in the norm's pass
        y, x = ops.norm_linear(x if pending is None else pending, n.weight, n.eps, p.weight,
                               None if pending is None else x)
        a = self.attn.attend(y, *args, **kwargs)
        n, ffn = self.ffn_norm, self.ffn
        gate_up, x = ops.norm_linear(a, n.weight, n.eps, ffn.gate_up_proj.weight, x)  # x + a, normed
        return x, ops.silu_mul_linear(gate_up, ffn.down_proj.weight)
