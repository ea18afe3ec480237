"""CLSACache: the decode state of every variant, owned by the model (not a transformers Cache).

Shape legend (B sequences that share one slot counter; slot = place in the padded sequence)
    dense      per layer:   k, v [B, cap, Hkv, D]        every layer keeps every token
    yoco*      per self-decoder layer: ring k, v [B, W, Hkv, D] + ring_pos [W] (slot or -1)
               shared:      k, v [B, cap, Hkv, D]        ONE K/V for all cross-decoder layers
               index keys:  {indexer id: [B, cap, Di]}   one key per slot per indexer, in the
                            cache dtype; with indexer_key_bits = 8: int8 [B, cap, Di] plus one
                            fp32 scale per slot [B, cap] (quantized on write)
    kv_start   [B] int      first valid slot per sequence (left padding before it)

Buffers grow by doubling (eager use) or are allocated once at ``max_length`` (static use, e.g.
CUDA graphs). In static mode every write is indexed by the device tensor q_pos (no Python int
enters the computation), readers get the whole buffer, the causal mask k_pos <= q_pos hides slots
not yet written, and ``pos`` (a 0-d device tensor) is the slot counter a captured graph advances. Batching sequences of different lengths uses LEFT padding: pass the
attention mask (0 = pad); right padding is refused once a cache is in use because the pads would
sit between a prompt and its continuation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from clsa import ops
from clsa.ops.indexer_topk.quant import quantize_keys


class IndexKeys(NamedTuple):
    """Cached indexer keys as the indexer reads them: ``k`` [B, S, Di] (int8 when 8-bit) and
    ``scale`` [B, S] fp32, the per-slot scale of 8-bit keys (None for keys in the cache dtype)."""

    k: torch.Tensor
    scale: torch.Tensor | None = None


class _Growing:
    """A [B, cap, ...] buffer written at slot offsets; grows by doubling unless static."""

    def __init__(self, parent, tail_shape, dtype):
        self.parent, self.tail, self.dtype = parent, tuple(tail_shape), dtype
        cap = parent.max_length or 0
        self.buf = torch.zeros(parent.batch_size, cap, *self.tail, dtype=dtype, device=parent.device)

    def write(self, x, q_pos):
        if self.parent.max_length is not None:  # static: graph-safe, indexed by the device tensor
            self.buf.index_copy_(1, q_pos[0], x.to(self.dtype))
            return self.buf
        start = self.parent.seen
        end = start + x.shape[1]
        if end > self.buf.shape[1]:
            if self.parent.max_length is not None:
                raise ValueError(f"cache is full: {end} slots needed, max_length={self.parent.max_length}; "
                                 "build the cache with a larger max_length")
            new = torch.zeros(self.buf.shape[0], max(end, 2 * self.buf.shape[1], 16), *self.tail,
                              dtype=self.dtype, device=self.buf.device)
            new[:, :self.buf.shape[1]] = self.buf
            self.buf = new
        self.buf[:, start:end] = x.to(self.dtype)
        return self.view(end)

    def view(self, end: int):
        return self.buf if self.parent.max_length is not None else self.buf[:, :end]

    def reorder(self, beam_idx):
        self.buf = self.buf.index_select(0, beam_idx.to(self.buf.device))


class QuantKeys:
    """8-bit indexer keys of every slot: int8 [B, cap, Di] and one fp32 scale per slot [B, cap]
    (symmetric absmax, ``quantize_keys``). Both buffers are written at the same slots, so static
    mode stays graph-safe."""

    def __init__(self, parent, di):
        self.k = _Growing(parent, (di,), torch.int8)
        self.scale = _Growing(parent, (), torch.float32)

    def write(self, keys, q_pos) -> IndexKeys:
        k_q, k_scale = quantize_keys(keys)
        return IndexKeys(self.k.write(k_q, q_pos), self.scale.write(k_scale, q_pos))

    def reorder(self, beam_idx):
        self.k.reorder(beam_idx)
        self.scale.reorder(beam_idx)


class FullKV:
    """Every slot's K/V (dense layers, and the shared YOCO cache)."""

    def __init__(self, parent, hkv, d, dtype):
        self.parent = parent
        self.k = _Growing(parent, (hkv, d), dtype)
        self.v = _Growing(parent, (hkv, d), dtype)

    def update(self, k, v, q_pos, rope=None):
        """Write the new K/V (k rotated first by the tables ``rope``, if given); returns every slot."""
        if rope is not None:
            k = ops.rotary(k, *rope)
        k_all, v_all = self.k.write(k, q_pos), self.v.write(v, q_pos)
        if self.parent.all_visible:  # exact-fit benchmark cache: no mask needed (k_pos=None)
            return k_all, v_all, None
        return k_all, v_all, self.parent.slot_positions(k_all.shape[1])

    def reorder(self, beam_idx):
        self.k.reorder(beam_idx)
        self.v.reorder(beam_idx)

    def ring_rows(self, T: int) -> None:
        """Keys from ``update`` are every slot, not [ring | own slots]: no ring layout."""
        return None


class RingKV:
    """The last ``window`` slots of a sliding-window layer; constant size whatever the length."""

    def __init__(self, parent, window, hkv, d, dtype):
        b, dev = parent.batch_size, parent.device
        self.window = window
        self.k = torch.zeros(b, window, hkv, d, dtype=dtype, device=dev)
        self.v = torch.zeros(b, window, hkv, d, dtype=dtype, device=dev)
        self.pos = torch.full((window,), -1, dtype=torch.long, device=dev)

    def update(self, k, v, q_pos, rope=None):
        """Write T > 1 new tokens' K/V (k rotated first by the tables ``rope``, if given); returns
        the keys to attend to: [ring | the new slots] (see ``ring_rows``). One token (decode) is
        written and attended in one call of ``ops.ring_attention`` over ``k``, ``v``, ``pos``."""
        B, T = k.shape[:2]
        if T == 1:
            raise ValueError("RingKV.update takes several tokens; decode one token with "
                             "ops.ring_attention(q, k, v, ring.k, ring.v, ring.pos, ...), which "
                             "writes it into the ring and attends in one launch")
        if rope is not None:
            k = ops.rotary(k, *rope)
        k_all = torch.cat((self.k, k.to(self.k.dtype)), 1)
        v_all = torch.cat((self.v, v.to(self.v.dtype)), 1)
        # Entries at or after the first new slot are stale: a step re-run at the same position
        # (graph warm-up, benchmark replays) already wrote them. Masking keeps updates idempotent.
        ring_pos = torch.where(self.pos < q_pos[0, :1].long(), self.pos, -1)
        k_pos = torch.cat((ring_pos.expand(B, -1), q_pos.long()), 1)
        n = min(T, self.window)
        slots = q_pos[0, T - n:].long()
        ring = slots % self.window
        self.k[:, ring] = k[:, T - n:].to(self.k.dtype)
        self.v[:, ring] = v[:, T - n:].to(self.v.dtype)
        self.pos[ring] = slots
        return k_all, v_all, k_pos

    def ring_rows(self, T: int) -> int:
        """``update`` returns keys laid out as [the ring's ``window`` rows | the T own slots] with
        the queries at contiguous slots: attention's ``ring`` hint."""
        return self.window

    def reorder(self, beam_idx):
        self.k = self.k.index_select(0, beam_idx.to(self.k.device))
        self.v = self.v.index_select(0, beam_idx.to(self.v.device))


class CLSACache:
    """Decode state for one batch of sequences; see the module docstring for the layout."""

    is_compileable = False

    def __init__(self, config, batch_size: int, device=None, dtype=torch.float32,
                 max_length: int | None = None):
        c = config
        self.config, self.batch_size = c, batch_size
        self.device, self.dtype = torch.device(device or "cpu"), dtype
        self.max_length = max_length
        # Set by benchmarks whose static cache is filled to its last slot with no padding: every
        # row is then visible to the query writing that slot, and attention may skip the mask.
        self.all_visible = False
        self.seen = 0
        self.pos = torch.zeros((), dtype=torch.long, device=self.device)
        self._slots = None
        self.kv_start = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        hkv, d = c.num_key_value_heads, c.head_dim
        if not c.is_yoco:  # dense: every slot per layer; swa: a ring buffer of its window per layer
            w = c.layer_window
            self.layers = [FullKV(self, hkv, d, dtype) if w is None else RingKV(self, w, hkv, d, dtype)
                           for _ in range(c.num_hidden_layers)]
            self.shared, self.index_keys = None, {}
        else:
            self.layers = [RingKV(self, c.sliding_window, hkv, d, dtype) for _ in range(c.num_self_layers)]
            self.shared = FullKV(self, hkv, d, dtype)
            self.index_keys = {i: QuantKeys(self, c.indexer_head_dim) if c.indexer_key_bits == 8
                               else _Growing(self, (c.indexer_head_dim,), dtype)
                               for i in c.indexer_layers()}

    def slot_positions(self, n: int):
        if self._slots is None or self._slots.shape[1] != n:
            self._slots = torch.arange(n, device=self.device).expand(self.batch_size, n)
        return self._slots

    def write_index_keys(self, i: int, keys, q_pos) -> IndexKeys:
        """Store indexer ``i``'s keys [B, T, Di] of the new slots (quantized when 8-bit); returns
        every cached key as the indexer reads it."""
        out = self.index_keys[i].write(keys, q_pos)
        return out if isinstance(out, IndexKeys) else IndexKeys(out)

    def buffers(self) -> list[torch.Tensor]:
        """Every K/V and indexer-key buffer (scales included): the bytes ``cache_report`` counts."""
        kv = [t for layer in self.layers for t in (layer.k, layer.v)]
        if self.shared is not None:
            kv += [self.shared.k, self.shared.v]
        for keys in self.index_keys.values():
            kv += [keys.k, keys.scale] if isinstance(keys, QuantKeys) else [keys]
        return [b.buf if isinstance(b, _Growing) else b for b in kv]

    def check_room(self, n: int) -> None:
        if self.max_length is not None and self.seen + n > self.max_length:
            raise ValueError(f"cache is full: {self.seen + n} slots needed, max_length={self.max_length}; "
                             "build the cache with a larger max_length")

    def advance(self, n: int) -> None:
        self.seen += n
        self.pos.add_(n)  # device-side twin of ``seen``; captured graphs replay this add

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def reorder_cache(self, beam_idx) -> None:
        """In-place batch reordering for beam search (transformers calls this)."""
        for layer in self.layers:
            layer.reorder(beam_idx)
        if self.shared is not None:
            self.shared.reorder(beam_idx)
        for buf in self.index_keys.values():
            buf.reorder(beam_idx)
        self.kv_start = self.kv_start.index_select(0, beam_idx.to(self.device))
