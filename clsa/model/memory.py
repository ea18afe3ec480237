"""Decode-state bytes of any config and variant, computed from the layout in cache.py.

    from clsa.model.memory import cache_report
    r = cache_report(CLSAConfig.from_name("yoco-3b", attention_variant="clsa"))
    r.per_token, r.per_sequence_fixed, r.per_sequence(131072)

per_token: bytes every extra context token adds (all layers' K/V for dense; the ONE shared K/V
plus each indexer's key for the YOCO family). per_sequence_fixed: bytes that do not grow with the
context (the self-decoder's sliding-window ring buffers). An indexer key takes Di * dtype_bytes,
or Di + 4 with ``indexer_key_bits=8`` (int8 entries and one fp32 scale per slot).
"""

from __future__ import annotations

from dataclasses import dataclass

from clsa.config import VARIANTS, CLSAConfig


@dataclass(frozen=True)
class CacheReport:
    variant: str
    per_token: int
    per_sequence_fixed: int
    kv_per_token: int
    indexer_per_token: int

    def per_sequence(self, context: int) -> int:
        return self.per_sequence_fixed + self.per_token * context


def indexer_key_bytes(config: CLSAConfig, dtype_bytes: int = 2) -> int:
    """Bytes of one slot's key of one indexer: Di * dtype_bytes, or Di + 4 when 8-bit."""
    if config.indexer_key_bits == 8:
        return config.indexer_head_dim + 4
    return config.indexer_head_dim * dtype_bytes


def cache_report(config: CLSAConfig, dtype_bytes: int = 2) -> CacheReport:
    c = config
    row = 2 * c.num_key_value_heads * c.head_dim * dtype_bytes  # one token's K and V
    if c.attention_variant == "swa":
        return CacheReport(c.attention_variant, 0, c.num_hidden_layers * c.sliding_window * row, 0, 0)
    if not c.is_yoco:
        kv = c.num_hidden_layers * row
        return CacheReport(c.attention_variant, kv, 0, kv, 0)
    idx = len(c.indexer_layers()) * indexer_key_bytes(c, dtype_bytes) if c.is_sparse else 0
    ring = c.num_self_layers * c.sliding_window * row
    return CacheReport(c.attention_variant, row + idx, ring, row, idx)


def variant_reports(config: CLSAConfig, dtype_bytes: int = 2, index_refresh_every: int = 4) -> list[CacheReport]:
    """One report per variant of the same shape (indexcache with G = ``index_refresh_every``)."""
    out = []
    for v in VARIANTS:
        g = index_refresh_every if v == "indexcache" else config.index_refresh_every
        cfg = CLSAConfig(**{**config.to_dict(), "attention_variant": v, "index_refresh_every": g})
        out.append(cache_report(cfg, dtype_bytes))
    return out
