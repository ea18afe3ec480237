"""The one switch between plain-PyTorch references and Triton kernels.

Model code calls ``clsa.ops.attention(...)`` etc. and never imports Triton. ``naive`` is the fp32
reference and runs everywhere (CPU included); ``torch`` is stock fast PyTorch (SDPA, bmm +
torch.topk, torch.gather in the input dtype): the baseline every kernel is timed against;
``triton`` loads the kernels lazily on first use. A Triton entry point
has the exact signature of its reference and may hand cases it does not cover (autograd, many
queries per row) back to the reference; each op's README says which.

    clsa.ops.set_backend("triton")          # process-wide
    with clsa.ops.use_backend("naive"): ...  # scoped, e.g. in tests
"""

from __future__ import annotations

import contextlib
import importlib
import os

from clsa.ops.attention import naive as _attn
from clsa.ops.cache_write import naive as _cw
from clsa.ops.indexer_topk import naive as _idx
from clsa.ops.linear import naive as _lin
from clsa.ops.norm import naive as _norm
from clsa.ops.rotary import naive as _rot
from clsa.ops.sparse_attention import naive as _sparse

BACKENDS = ("naive", "torch", "triton")

# op name -> (reference function, {backend: module holding the entry point of the same name})
_OPS = {
    "attention": (_attn.attention, {"torch": "clsa.ops.attention.stock",
                                    "triton": "clsa.ops.attention.triton_decode"}),
    "ring_attention": (_attn.ring_attention, {"torch": "clsa.ops.attention.stock",
                                              "triton": "clsa.ops.attention.triton_ring"}),
    "sparse_attention": (_sparse.sparse_attention, {"torch": "clsa.ops.sparse_attention.stock",
                                                    "triton": "clsa.ops.sparse_attention.triton_decode"}),
    "gather_kv": (_sparse.gather_kv, {"torch": "clsa.ops.sparse_attention.stock",
                                      "triton": "clsa.ops.sparse_attention.triton_gather"}),
    "indexer_scores": (_idx.indexer_scores, {"torch": "clsa.ops.indexer_topk.stock",
                                             "triton": "clsa.ops.indexer_topk.triton_topk"}),
    "indexer_topk": (_idx.indexer_topk, {"torch": "clsa.ops.indexer_topk.stock",
                                         "triton": "clsa.ops.indexer_topk.triton_topk"}),
    "rms_norm": (_norm.rms_norm, {"torch": "clsa.ops.norm.stock", "triton": "clsa.ops.norm.triton_norm"}),
    "silu_mul": (_norm.silu_mul, {"torch": "clsa.ops.norm.stock", "triton": "clsa.ops.norm.triton_norm"}),
    "linear": (_lin.linear, {"torch": "clsa.ops.linear.stock", "triton": "clsa.ops.linear.triton_gemv"}),
    "norm_linear": (_lin.norm_linear, {"torch": "clsa.ops.linear.stock",
                                       "triton": "clsa.ops.linear.triton_gemv"}),
    "silu_mul_linear": (_lin.silu_mul_linear, {"torch": "clsa.ops.linear.stock",
                                               "triton": "clsa.ops.linear.triton_gemv"}),
    "rotary": (_rot.rotary, {"torch": "clsa.ops.rotary.naive", "triton": "clsa.ops.rotary.triton_rotary"}),
    # stock PyTorch has nothing better than index_copy_ (the reference): torch runs naive
    "ring_write": (_cw.ring_write, {"torch": "clsa.ops.cache_write.naive",
                                    "triton": "clsa.ops.cache_write.triton_write"}),
}

_state = {"backend": os.environ.get("CLSA_BACKEND", "naive")}
_cache: dict[str, object] = {}


def set_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown ops backend {name!r}: choose one of {BACKENDS}")
    _state["backend"] = name


def get_backend() -> str:
    return _state["backend"]


@contextlib.contextmanager
def use_backend(name: str):
    old = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


def _resolve(op: str):
    ref, modules = _OPS[op]
    if _state["backend"] == "naive":
        return ref
    module = modules[_state["backend"]]
    key = f"{module}.{op}"
    if key not in _cache:
        _cache[key] = getattr(importlib.import_module(module), op)
    return _cache[key]


def attention(*args, **kwargs):
    return _resolve("attention")(*args, **kwargs)


def ring_attention(*args, **kwargs):
    return _resolve("ring_attention")(*args, **kwargs)


def sparse_attention(*args, **kwargs):
    return _resolve("sparse_attention")(*args, **kwargs)


def gather_kv(*args, **kwargs):
    return _resolve("gather_kv")(*args, **kwargs)


def indexer_scores(*args, **kwargs):
    return _resolve("indexer_scores")(*args, **kwargs)


def indexer_topk(*args, **kwargs):
    return _resolve("indexer_topk")(*args, **kwargs)


def rotary(*args, **kwargs):
    return _resolve("rotary")(*args, **kwargs)


def ring_write(*args, **kwargs):
    return _resolve("ring_write")(*args, **kwargs)


def rms_norm(*args, **kwargs):
    return _resolve("rms_norm")(*args, **kwargs)


def silu_mul(*args, **kwargs):
    return _resolve("silu_mul")(*args, **kwargs)


def linear(*args, **kwargs):
    return _resolve("linear")(*args, **kwargs)


def norm_linear(*args, **kwargs):
    return _resolve("norm_linear")(*args, **kwargs)


def silu_mul_linear(*args, **kwargs):
    return _resolve("silu_mul_linear")(*args, **kwargs)
