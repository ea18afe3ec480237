"""CLSAForCausalLM: the Hugging Face face of the model (save/load, AutoModel, generate()).

    from clsa import CLSAConfig
    from clsa.model import CLSAForCausalLM
    model = CLSAForCausalLM(CLSAConfig.from_name("debug", attention_variant="clsa"))
    out = model(input_ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
    model.generate(input_ids, attention_mask=mask, max_new_tokens=20)   # greedy, sampling, beams

Shape legend: input_ids [B, T] int; attention_mask [B, seen + T] (1 = token, 0 = left pad);
logits [B, N, vocab] fp32 for the last N = logits_to_keep positions (all when 0).
The model owns its cache (CLSACache); transformers 5.19-5.23 call it ``past_key_values`` and 5.24+
``cache``: both names are accepted and both are returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, make_dataclass

import torch
import torch.nn.functional as F
from torch import nn
import inspect

from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from clsa.config import CLSAConfig
from clsa.model.backbone import CLSABackbone
from clsa.model.cache import CLSACache
from clsa.model.layers import RMSNorm

try:  # transformers 5.x: init helpers that skip weights already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # pragma: no cover
    _init = nn.init

_SHIMS = {
    "configuration_clsa.py": "from clsa.config import CLSAConfig  # noqa: F401\n",
    "modeling_clsa.py": "from clsa.model.modeling import CLSAForCausalLM  # noqa: F401\n",
}


# transformers 5.24 renamed the cache argument and output field from past_key_values to cache.
CACHE_NAME = ("cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
              else "past_key_values")

# loss, logits, and the cache under the installed transformers' name for it.
CLSAOutput = dataclass(make_dataclass("CLSAOutput", [
    ("loss", torch.Tensor | None, field(default=None)),
    ("logits", torch.Tensor | None, field(default=None)),
    (CACHE_NAME, CLSACache | None, field(default=None))], bases=(ModelOutput,)))


def kv_start_from_mask(mask: torch.Tensor, with_cache: bool) -> torch.Tensor:
    """First real slot per row from a [B, L] 0/1 mask; refuses holes and, with a cache, right pads."""
    m = mask.bool()
    if not m.any(dim=1).all():
        raise ValueError("attention_mask has a row with no real token (all zeros); drop that row")
    L = m.shape[1]
    first = m.int().argmax(1)
    last = L - 1 - m.flip(1).int().argmax(1)
    if ((last - first + 1) != m.sum(1)).any():
        raise ValueError("attention_mask has zeros between real tokens; only left or right padding "
                         "is supported")
    if with_cache and (last != L - 1).any():
        raise ValueError("right padding with a cache: pads would sit between a prompt and its "
                         "continuation. Pad on the left (tokenizer.padding_side = 'left')")
    return first.long()


class CLSAPreTrainedModel(PreTrainedModel):
    config_class = CLSAConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block", "CrossBlock"]
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            _init.ones_(module.weight)


class CLSAForCausalLM(CLSAPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: CLSAConfig):
        super().__init__(config)
        self.model = CLSABackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must not build a DynamicCache: the model makes its own CLSACache

    def new_cache(self, batch_size: int, max_length: int | None = None) -> CLSACache:
        return CLSACache(self.config, batch_size, self.device, self.dtype, max_length)

    def _check_inputs(self, input_ids, attention_mask, cache):
        c = self.config
        if input_ids is None:
            raise ValueError("input_ids is required (inputs_embeds is not supported)")
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}; "
                            "pass token ids, e.g. tensor.long()")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        if input_ids.numel() == 0:
            raise ValueError(f"empty input: input_ids has shape {tuple(input_ids.shape)}; "
                             "give at least one token per row")
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= c.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is out of the vocabulary [0, {c.vocab_size}); "
                             "check the tokenizer matches config.vocab_size")
        seen = 0 if cache is None else cache.seen
        total = seen + input_ids.shape[1]
        if total > c.max_position_embeddings:
            raise ValueError(f"context of {total} tokens exceeds max_position_embeddings="
                             f"{c.max_position_embeddings}; shorten the input or raise the limit")
        if cache is not None:
            cache.check_room(input_ids.shape[1])
        if cache is not None and cache.batch_size != input_ids.shape[0]:
            raise ValueError(f"cache holds {cache.batch_size} sequences but input_ids has "
                             f"{input_ids.shape[0]} rows; start a new cache")
        if attention_mask is not None and tuple(attention_mask.shape) != (input_ids.shape[0], total):
            raise ValueError(f"attention_mask must be [batch, cached + new] = "
                             f"[{input_ids.shape[0]}, {total}], got {tuple(attention_mask.shape)}")

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                past_key_values=None, labels=None, use_cache=None, logits_to_keep: int = 0,
                inputs_embeds=None, dense_cross: bool = False, return_dict=None, **kwargs):
        if inputs_embeds is not None:
            raise ValueError("inputs_embeds is not supported; pass input_ids")
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if labels is not None:
            use_cache = False if cache is None else use_cache
        self._check_inputs(input_ids, attention_mask, cache)
        B, T = input_ids.shape
        if cache is None and use_cache:
            cache = self.new_cache(B)
        seen = 0 if cache is None else cache.seen
        if attention_mask is not None:
            kv_start = kv_start_from_mask(attention_mask, cache is not None)
            if cache is not None:
                cache.kv_start.copy_(kv_start)  # in place: captured graphs hold its address
        else:
            kv_start = cache.kv_start if cache is not None else input_ids.new_zeros(B)
        q_pos = (seen + torch.arange(T, device=input_ids.device)).expand(B, T)
        positions = position_ids if position_ids is not None else (q_pos - kv_start[:, None]).clamp_min(0)
        keep = None if labels is not None or not logits_to_keep else int(logits_to_keep)
        h = self._run(input_ids, positions, q_pos, kv_start, cache, keep, dense_cross)
        logits = self.lm_head(h).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CLSAOutput(loss=loss, logits=logits, **{CACHE_NAME: cache})

    def _run(self, input_ids, positions, q_pos, kv_start, cache, keep, dense_cross):
        """With a cache, prefill long prompts in chunks of self_decoder_chunk; a chunk none of
        whose logits are needed runs only the self-decoder (YOCO early exit)."""
        T, chunk = input_ids.shape[1], self.config.self_decoder_chunk
        if cache is None or T <= chunk:
            return self.model(input_ids, positions, q_pos, kv_start, cache, keep, dense_cross)
        first_kept = 0 if keep is None else T - min(keep, T)
        outs = []
        for s in range(0, T, chunk):
            e = min(s + chunk, T)
            n = min(max(e - first_kept, 0), e - s)
            outs.append(self.model(input_ids[:, s:e], positions[:, s:e], q_pos[:, s:e], kv_start,
                                   cache, n, dense_cross))
        return torch.cat(outs, 1)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, cache=None,
                                      past_key_values=None, use_cache=True, **kwargs):
        cache = cache if cache is not None else past_key_values
        if cache is not None and cache.seen > 0:
            input_ids = input_ids[:, cache.seen:]
        return {"input_ids": input_ids.contiguous(), "attention_mask": attention_mask,
                CACHE_NAME: cache, "use_cache": use_cache, "logits_to_keep": 1}

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also writes two one-line modules + auto_map, so trust_remote_code loading finds clsa."""
        self.config.auto_map = {"AutoConfig": "configuration_clsa.CLSAConfig",
                                "AutoModelForCausalLM": "modeling_clsa.CLSAForCausalLM"}
        super().save_pretrained(save_directory, *args, **kwargs)
        for name, text in _SHIMS.items():
            with open(os.path.join(save_directory, name), "w") as f:
                f.write(text)


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModelForCausalLM know model_type 'clsa' in this process."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register("clsa", CLSAConfig)
        AutoModelForCausalLM.register(CLSAConfig, CLSAForCausalLM)
    except ValueError:
        pass  # already registered


__all__ = ["CLSAForCausalLM", "CLSAOutput", "CLSAPreTrainedModel", "kv_start_from_mask",
           "register_auto_classes"]
