"""Builders shared by the evaluation tests."""

from pathlib import Path

import torch

from clsa import CLSAConfig
from clsa.model import CLSAForCausalLM

FIXTURES = Path(__file__).parent / "fixtures"


def debug_model(variant: str = "clsa", seed: int = 0, **overrides) -> CLSAForCausalLM:
    """Debug preset with the byte tokenizer's 260 ids and, for YOCO variants, 4 cross layers."""
    torch.manual_seed(seed)
    overrides = {"vocab_size": 260, "num_hidden_layers": 6, "index_refresh_every": 2,
                 "bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 258, **overrides}
    if variant != "dense":
        overrides.setdefault("num_self_layers", 2)
    return CLSAForCausalLM(CLSAConfig.from_name("debug", attention_variant=variant, **overrides)).eval()
