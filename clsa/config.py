"""CLSAConfig: one validated config for every attention variant, plus named presets.

Variants (``attention_variant``):
    dense       GQA decoder-only Transformer; every layer owns a K/V cache.
    yoco        self-decoder (first ``num_self_layers`` layers, sliding-window attention) + ONE
                global K/V projection + cross-decoder layers attending densely to that shared K/V.
    yoco-dsa    yoco, but every cross-decoder layer has its own indexer and top-k (DSA per layer).
    indexcache  one indexer every ``index_refresh_every`` = G cross layers; the layers between
                reuse the last index (G = 1 is yoco-dsa).
    clsa        one indexer, run once per token on the self-decoder output; its top-k is reused
                by ALL cross-decoder layers.
    swa         the block-sparse quality baseline: the dense layer stack with EVERY layer on
                sliding-window attention (``sliding_window``); a constant-size cache, no
                long-range retrieval beyond what the window stack carries.

``indexer_key_bits`` = 8 stores the cached indexer keys as int8 with one fp32 scale per slot (an
inference cache format: the decode-time indexer scan reads half the bytes); training and every
forward without a cache use the unquantized keys. 16 (the default) keeps them in the model dtype.

``decode_gather`` picks how a sparse cross-decoder reads its selected K/V rows at decode (one query
per row): "once" gathers them into one compact buffer per step that every layer reads; "per_layer"
lets each layer's kernel gather them from the cache itself; "auto" (the default) gathers once at
batch 1 and per layer above (the faster of the two in H200 decode-step profiles at 128K). The
result is the same either way.

``CLSAConfig.from_name("debug")`` returns a preset; keyword arguments override its fields.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

VARIANTS = ("dense", "yoco", "yoco-dsa", "indexcache", "clsa", "swa")
DENSE_STACK = ("dense", "swa")  # one layer stack, no cross-decoder
SPARSE_VARIANTS = ("yoco-dsa", "indexcache", "clsa")
INDEXER_SCORING = ("dot", "relu")
INDEXER_ROPE = ("neox", "none")
INDEXER_KEY_BITS = (16, 8)
DECODE_GATHER = ("auto", "once", "per_layer")

PRESETS: dict[str, dict] = {
    # Tiny, for tests: every code path in well under a second on CPU.
    "debug": dict(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=8,
        indexer_heads=1, indexer_head_dim=8, index_top_k=6, max_position_embeddings=512,
    ),
    # Small training runs on a CPU (minutes) with byte-level tokens.
    "tiny": dict(
        vocab_size=260, hidden_size=128, intermediate_size=352, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=64,
        indexer_heads=1, indexer_head_dim=32, index_top_k=64, max_position_embeddings=4096,
    ),
    # Tens of millions of parameters: single-GPU training runs.
    "small": dict(
        vocab_size=260, hidden_size=512, intermediate_size=1408, num_hidden_layers=12,
        num_attention_heads=8, num_key_value_heads=4, head_dim=64, sliding_window=256,
        indexer_heads=1, indexer_head_dim=64, index_top_k=256, max_position_embeddings=32768,
    ),
    # The YOCO 3B shape (arXiv 2405.05254), used by the benchmarks with random weights.
    "yoco-3b": dict(
        vocab_size=100288, hidden_size=3072, intermediate_size=8192, num_hidden_layers=26,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128, sliding_window=1024,
        indexer_heads=1, indexer_head_dim=128, index_top_k=2048, max_position_embeddings=1048576,
        rope_theta=640000.0,
    ),
}


def _check(cond: bool, field: str, value, allowed: str) -> None:
    if not cond:
        raise ValueError(f"CLSAConfig.{field}={value!r} is invalid: allowed {allowed}.")


class CLSAConfig(PreTrainedConfig):
    model_type = "clsa"
    keys_to_ignore_at_inference = ["cache"]

    def __init__(
        self,
        vocab_size: int = 256,
        hidden_size: int = 32,
        intermediate_size: int = 64,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        head_dim: int = 8,
        attention_variant: str = "clsa",
        num_self_layers: int | None = None,
        sliding_window: int = 8,
        index_refresh_every: int = 1,
        indexer_heads: int = 1,
        indexer_head_dim: int = 8,
        indexer_scoring: str = "dot",
        indexer_rope: str = "neox",
        indexer_key_bits: int = 16,
        index_top_k: int = 2048,
        decode_gather: str = "auto",
        max_position_embeddings: int = 4096,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        query_chunk_size: int = 256,
        self_decoder_chunk: int = 4096,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.attention_variant = attention_variant
        self.num_self_layers = num_hidden_layers // 2 if num_self_layers is None else num_self_layers
        self.sliding_window = sliding_window
        self.index_refresh_every = index_refresh_every
        self.indexer_heads = indexer_heads
        self.indexer_head_dim = indexer_head_dim
        self.indexer_scoring = indexer_scoring
        self.indexer_rope = indexer_rope
        self.indexer_key_bits = indexer_key_bits
        self.index_top_k = index_top_k
        self.decode_gather = decode_gather
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.query_chunk_size = query_chunk_size
        self.self_decoder_chunk = self_decoder_chunk
        self.use_cache = use_cache
        self.validate()
        super().__init__(
            tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs,
        )

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its allowed range."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "sliding_window",
                     "indexer_heads", "indexer_head_dim", "index_top_k", "max_position_embeddings",
                     "query_chunk_size", "self_decoder_chunk", "index_refresh_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   name, value, "an integer >= 1")
        _check(self.attention_variant in VARIANTS, "attention_variant", self.attention_variant,
               f"one of {VARIANTS}")
        _check(self.num_attention_heads % self.num_key_value_heads == 0, "num_key_value_heads",
               self.num_key_value_heads, f"a divisor of num_attention_heads={self.num_attention_heads}")
        _check(self.head_dim % 2 == 0, "head_dim", self.head_dim, "an even integer (rotary pairs)")
        _check(self.indexer_head_dim % 2 == 0, "indexer_head_dim", self.indexer_head_dim,
               "an even integer (rotary pairs)")
        _check(self.indexer_scoring in INDEXER_SCORING, "indexer_scoring", self.indexer_scoring,
               f"one of {INDEXER_SCORING}")
        _check(self.indexer_rope in INDEXER_ROPE, "indexer_rope", self.indexer_rope,
               f"one of {INDEXER_ROPE}")
        _check(isinstance(self.indexer_key_bits, int) and self.indexer_key_bits in INDEXER_KEY_BITS,
               "indexer_key_bits", self.indexer_key_bits, f"one of {INDEXER_KEY_BITS}")
        _check(self.decode_gather in DECODE_GATHER, "decode_gather", self.decode_gather,
               f"one of {DECODE_GATHER}")
        if self.is_yoco:
            _check(isinstance(self.num_self_layers, int) and
                   1 <= self.num_self_layers < self.num_hidden_layers, "num_self_layers",
                   self.num_self_layers, f"1 .. num_hidden_layers-1 = {self.num_hidden_layers - 1}")
        _check(self.rope_theta > 0, "rope_theta", self.rope_theta, "a float > 0")
        _check(self.rms_norm_eps > 0, "rms_norm_eps", self.rms_norm_eps, "a float > 0")

    # Derived quantities used across the model, the cache and the benchmarks.
    @property
    def is_yoco(self) -> bool:
        return self.attention_variant not in DENSE_STACK

    @property
    def layer_window(self) -> int | None:
        """Window of the layers of a dense-stack variant (None: full causal attention)."""
        return self.sliding_window if self.attention_variant == "swa" else None

    @property
    def num_cross_layers(self) -> int:
        return self.num_hidden_layers - self.num_self_layers if self.is_yoco else 0

    @property
    def is_sparse(self) -> bool:
        return self.attention_variant in SPARSE_VARIANTS

    def indexer_layers(self) -> list[int]:
        """Cross-layer numbers (0-based within the cross-decoder) that own an indexer.

        clsa has a single indexer outside the cross layers: reported as [0] (it serves layer 0 on).
        """
        v = self.attention_variant
        if v == "yoco-dsa":
            return list(range(self.num_cross_layers))
        if v == "indexcache":
            return list(range(0, self.num_cross_layers, self.index_refresh_every))
        if v == "clsa":
            return [0]
        return []

    @classmethod
    def from_name(cls, name: str, **overrides) -> "CLSAConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})
