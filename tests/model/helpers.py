"""Small builders shared by the model tests (debug preset, eval mode, fixed seeds)."""

import torch

from clsa import CLSAConfig
from clsa.model import CLSAForCausalLM

ALL = ("dense", "yoco", "yoco-dsa", "indexcache", "clsa", "swa")
SPARSE = ("yoco-dsa", "indexcache", "clsa")


def build(variant="clsa", seed=0, **overrides):
    overrides.setdefault("index_refresh_every", 2)
    torch.manual_seed(seed)
    return CLSAForCausalLM(CLSAConfig.from_name("debug", attention_variant=variant, **overrides)).eval()


def tokens(b, t, seed=1, vocab=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (b, t), generator=g)


def incremental_logits(model, ids, prefill, mask=None, step=1):
    """Prefill ``prefill`` tokens, then feed the rest ``step`` at a time; concatenated logits."""
    cache = model.new_cache(ids.shape[0])
    T = ids.shape[1]
    outs = []
    for s, e in [(0, prefill)] + [(t, min(t + step, T)) for t in range(prefill, T, step)]:
        m = None if mask is None else mask[:, :e]
        outs.append(model(ids[:, s:e], attention_mask=m, cache=cache).logits)
    return torch.cat(outs, 1)
