"""Ops reached by model code through one backend switch (see backend.py)."""

from clsa.ops.backend import (BACKENDS, attention, gather_kv, get_backend, indexer_scores,
                              indexer_topk, linear, norm_linear, ring_attention, ring_write,
                              rms_norm, rotary, set_backend, silu_mul, silu_mul_linear,
                              sparse_attention, use_backend)

__all__ = ["BACKENDS", "attention", "gather_kv", "get_backend", "indexer_scores", "indexer_topk",
           "linear", "norm_linear", "ring_attention", "ring_write", "rms_norm", "rotary",
           "set_backend", "silu_mul", "silu_mul_linear", "sparse_attention", "use_backend"]
