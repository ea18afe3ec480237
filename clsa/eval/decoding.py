"""Batched greedy decoding through ``model.generate`` (left padding), with optional stop strings.

Shape legend
    prompts     list of N token-id lists (any lengths)
    batch       [b, W] int64, each prompt right-aligned (LEFT padded with pad_id), mask 0 on pads
    returns     list of N lists: the new tokens of each prompt, cut before its first EOS and
                after the step at which one of its stop strings appeared

Prompts are sorted by length (longest first) so each batch pads little; results come back in the
caller's order. Works with clsa models and any transformers causal LM.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


class _StopStrings:
    """generate() stopping criterion: a row is done once its decoded new text holds a stop string."""

    def __init__(self, stops: Sequence[str], decode: Callable, prompt_width: int):
        self.stops, self.decode, self.width = list(stops), decode, prompt_width
        self.done_at: dict[int, int] = {}

    def __call__(self, input_ids, scores=None, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for r in range(input_ids.shape[0]):
            if r in self.done_at:
                done[r] = True
                continue
            text = self.decode(input_ids[r, self.width:].tolist())
            if any(s in text for s in self.stops):
                self.done_at[r] = input_ids.shape[1]
                done[r] = True
        return done


def pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([b, W] ids, [b, W] 0/1 mask) with every row right-aligned."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def greedy_generate(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int,
                    pad_id: int, batch_size: int = 8, stop: Sequence[str] = (),
                    decode: Callable | None = None) -> list[list[int]]:
    """Greedy continuations of ``prompts`` (see the module legend); ``stop`` needs ``decode``."""
    from transformers import StoppingCriteriaList

    if any(len(p) == 0 for p in prompts):
        raise ValueError("greedy_generate got an empty prompt; give every prompt >= 1 token "
                         "(e.g. the tokenizer's eos/bos id)")
    if stop and decode is None:
        raise ValueError("stop strings need decode= (token ids -> text)")
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = pad_left([prompts[i] for i in idx], pad_id)
        width = ids.shape[1]
        crit = _StopStrings(stop, decode, width) if stop else None
        gen = model.generate(ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             eos_token_id=eos_id, pad_token_id=pad_id,
                             stopping_criteria=StoppingCriteriaList([crit]) if crit else None)
        for r, i in enumerate(idx):
            end = crit.done_at.get(r, gen.shape[1]) if crit else gen.shape[1]
            new = gen[r, width:end].tolist()
            out[i] = new[:new.index(eos_id)] if eos_id in new else new
    return out


__all__ = ["greedy_generate", "pad_left"]
