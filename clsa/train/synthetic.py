"""Seeded synthetic long-context tasks (needle, multi-needle, MQAR, variable tracking).

Format legend
    Sample.prompt   filler text with "facts" (needles, pairs, assignments) at chosen depths,
                    then "\\nQuestion: ...\\nAnswer: "; Sample.answer follows it, e.g. "48213"
    Sample.meta     the task's ground truth (keys, values, depths, ...) plus "seed",
                    "target_len", "fact_depths" (one per fact, sorted) and "segments" =
                    [[kind, start, end], ...] character spans of the prompt, kind in
                    {"filler", "fact", "question"}
    input_ids       [L] int64, L = target_len = prompt + answer + <eos>
    loss_mask       [L] bool, True exactly on the answer tokens and the <eos>

Depth d of a fact = fraction of all filler tokens that come before it. Filler is stdlib-like
text from ``filler_docs`` (made ASCII, stripped of anything that looks like a fact or a question)
or, without documents, deterministic pseudo-words. Only filler is cut or extended to hit
``target_len``; facts and the question are never touched.

Usage
    tok = ByteTokenizer()
    s = make_sample("var_track", rng_seed=7, target_len=4096, tokenizer=tok,
                    filler_docs=stdlib_corpus(), hops=3)
    ids, mask = to_tokens(s, tok, 4096)
    assert check_answer(s) == s.answer          # parses the prompt text alone
"""

from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch

from clsa.train.corpus import DataError, Document

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
# Filler must never contain text a fact or question parser could match, or check_answer and the
# model would see two conflicting facts.
_FORBIDDEN = re.compile(r"magic number|=>|VAR |Question:|Answer:")
_QUESTION = re.compile(r"\nQuestion: (.*)\nAnswer: \Z")


@dataclass
class Sample:
    """One task instance; see the module legend for the fields."""

    task: str
    prompt: str
    answer: str
    meta: dict = field(default_factory=dict)


class TokenizedSample(NamedTuple):
    """``input_ids`` [L] int64 and ``loss_mask`` [L] bool (answer + eos); unpacks as a pair."""

    input_ids: torch.Tensor
    loss_mask: torch.Tensor

    @property
    def prompt_len(self) -> int:
        """Number of prompt tokens: generation for evaluation starts at this position."""
        return int(self.loss_mask.long().argmax())


@dataclass
class _Spec:
    """What a task builder returns: facts (each "\\n...\\n") with sorted depths in [0, 1]."""

    facts: list[str]
    depths: list[float]
    question: str
    answer: str
    meta: dict


def _word(rng: random.Random, syllables: int = 3) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def _distinct(make: Callable[[], object], n: int) -> list:
    out: list = []
    while len(out) < n:
        x = make()
        if x not in out:
            out.append(x)
    return out


def _number(rng: random.Random, digits: int) -> str:
    if not 1 <= digits <= 18:
        raise DataError(f"digits={digits} must be in [1, 18]")
    return str(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1))


def _depths(rng: random.Random, n: int) -> list[float]:
    return sorted(rng.random() for _ in range(n))


def _needle_fact(key: str, value: str) -> str:
    return f"\nThe magic number for {key} is {value}.\n"


def needle(rng: random.Random, depth: float | None = None, digits: int = 5) -> _Spec:
    """One "The magic number for <key> is <value>." at ``depth`` (random when None)."""
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise DataError(f"needle depth={depth} must be in [0, 1]")
    key, value = _word(rng), _number(rng, digits)
    depth = rng.random() if depth is None else float(depth)
    return _Spec([_needle_fact(key, value)], [depth],
                 f"\nQuestion: What is the magic number for {key}?\nAnswer: ", value,
                 {"key": key, "value": value, "depth": depth})


def multi_needle(rng: random.Random, n_needles: int = 4, ask: str = "one",
                 digits: int = 5) -> _Spec:
    """``n_needles`` needles at random depths; ask for one of them (``ask="one"``) or all."""
    if n_needles < 1 or ask not in ("one", "all"):
        raise DataError(f"multi_needle needs n_needles >= 1 (got {n_needles}) and ask in "
                        f"('one', 'all') (got {ask!r})")
    keys = _distinct(lambda: _word(rng), n_needles)
    values = _distinct(lambda: _number(rng, digits), n_needles)
    depths = _depths(rng, n_needles)
    if ask == "one":
        asked = [rng.randrange(n_needles)]
        question = f"\nQuestion: What is the magic number for {keys[asked[0]]}?\nAnswer: "
    else:
        asked = rng.sample(range(n_needles), n_needles)
        names = ", ".join(keys[i] for i in asked)
        question = f"\nQuestion: What are the magic numbers for {names}?\nAnswer: "
    return _Spec([_needle_fact(k, v) for k, v in zip(keys, values)], depths, question,
                 ", ".join(values[i] for i in asked),
                 {"keys": keys, "values": values, "depths": depths, "asked": asked})


def mqar(rng: random.Random, n_pairs: int = 16, n_queries: int = 4, digits: int = 4,
         depth: float | None = None) -> _Spec:
    """Multi-query associative recall: one block of ``key => value`` lines, then queries."""
    if not 1 <= n_queries <= n_pairs:
        raise DataError(f"mqar needs 1 <= n_queries <= n_pairs (got {n_queries}, {n_pairs})")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise DataError(f"mqar depth={depth} must be in [0, 1]")
    keys = _distinct(lambda: _word(rng), n_pairs)
    values = _distinct(lambda: _number(rng, digits), n_pairs)
    depth = rng.random() if depth is None else float(depth)
    asked = rng.sample(range(n_pairs), n_queries)
    block = "\n" + "".join(f"{k} => {v}\n" for k, v in zip(keys, values))
    names = ", ".join(keys[i] for i in asked)
    return _Spec([block], [depth], f"\nQuestion: What are the values for {names}?\nAnswer: ",
                 ", ".join(values[i] for i in asked),
                 {"keys": keys, "values": values, "asked": asked, "depth": depth})


def var_track(rng: random.Random, hops: int = 4, n_distractors: int = 2,
              digits: int = 5) -> _Spec:
    """Variable tracking: "VAR a = 58213." then ``hops`` copies "VAR b = a." ...; ask the last.

    ``n_distractors`` more chains of the same length with other values are interleaved; each
    chain's statements stay in order, all at sorted random depths.
    """
    if hops < 1 or n_distractors < 0:
        raise DataError(f"var_track needs hops >= 1 (got {hops}) and n_distractors >= 0 "
                        f"(got {n_distractors})")
    n_chains = 1 + n_distractors
    names = _distinct(lambda: _word(rng), n_chains * (hops + 1))
    values = _distinct(lambda: _number(rng, digits), n_chains)
    chains = []
    for c in range(n_chains):
        chain = names[c * (hops + 1):(c + 1) * (hops + 1)]
        stmts = [f"\nVAR {chain[0]} = {values[c]}.\n"]
        stmts += [f"\nVAR {chain[i]} = {chain[i - 1]}.\n" for i in range(1, hops + 1)]
        chains.append(stmts)
    # A random interleaving that keeps each chain's order: draw chain ids, then pop in order.
    slots = [c for c in range(n_chains) for _ in range(hops + 1)]
    rng.shuffle(slots)
    cursors = [0] * n_chains
    facts = []
    for c in slots:
        facts.append(chains[c][cursors[c]])
        cursors[c] += 1
    depths = _depths(rng, len(facts))
    query = names[hops]
    return _Spec(facts, depths, f"\nQuestion: What is the value of {query}?\nAnswer: ",
                 values[0], {"chain": names[:hops + 1], "value": values[0], "hops": hops,
                             "depths": depths})


TASKS: dict[str, Callable[..., _Spec]] = {
    "needle": needle, "multi_needle": multi_needle, "mqar": mqar, "var_track": var_track,
}


def _sanitize(text: str) -> str:
    text = text.encode("ascii", "ignore").decode("ascii")
    while _FORBIDDEN.search(text):
        text = _FORBIDDEN.sub(" ", text)
    return text


def _pseudo_text(rng: random.Random):
    """Endless deterministic pseudo-word sentences."""
    while True:
        words = [_word(rng, rng.randint(1, 3)) for _ in range(rng.randint(5, 12))]
        yield " ".join(words).capitalize() + ". " + ("\n" if rng.random() < 0.2 else "")


def _doc_text(rng: random.Random, docs: list):
    """Sanitized text from a random line of a random document onward, cycling through docs."""
    texts = [d.text if isinstance(d, Document) else d for d in docs]
    i = rng.randrange(len(texts))
    start = texts[i].find("\n", rng.randrange(max(1, len(texts[i])))) + 1
    empty_run = 0
    while empty_run < len(texts):
        chunk = _sanitize(texts[i][start:]) + "\n"
        empty_run = empty_run + 1 if not chunk.strip() else 0
        if chunk.strip():
            yield chunk
        i, start = (i + 1) % len(texts), 0
    # Every document sanitizes to nothing (e.g. all non-ASCII): pseudo-words instead.
    yield from _pseudo_text(rng)


def _filler_ids(rng: random.Random, tokenizer, filler_docs, n_tokens: int) -> list[int]:
    """Exactly ``n_tokens`` filler token ids (ASCII text, so any cut decodes cleanly)."""
    if n_tokens == 0:
        return []
    source = _doc_text(rng, filler_docs) if filler_docs else _pseudo_text(rng)
    parts, n_chars = [], 0
    want_chars = n_tokens  # every token of a byte-level tokenizer covers >= 1 ASCII char
    while True:
        while n_chars < want_chars:
            parts.append(next(source))
            n_chars += len(parts[-1])
        ids = tokenizer.encode("".join(parts))
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
        want_chars = n_chars + 2 * (n_tokens - len(ids)) + 64


def _piece_sizes(depths: list[float], budget: int) -> list[int]:
    cuts = [0] + [min(budget, int(d * budget)) for d in depths] + [budget]
    return [b - a for a, b in zip(cuts, cuts[1:])]


def _task_options(task: str, kwargs: dict) -> Callable[..., _Spec]:
    if task not in TASKS:
        raise DataError(f"unknown synthetic task {task!r}; choose one of {sorted(TASKS)}")
    builder = TASKS[task]
    allowed = [p for p in inspect.signature(builder).parameters if p != "rng"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise DataError(f"task {task!r} has no option {', '.join(unknown)}; its options are "
                        f"{', '.join(allowed)}")
    return builder


def min_length(task: str, rng_seed: int, tokenizer, **task_kwargs) -> int:
    """The shortest ``target_len`` ``make_sample`` accepts for this (task, rng_seed, kwargs):
    facts + question + answer + <eos>, with no filler at all."""
    spec = _task_options(task, task_kwargs)(random.Random(f"clsa-synthetic/{task}/{rng_seed}"),
                                            **task_kwargs)
    fixed = sum(len(ids) for ids in tokenizer.encode_many([*spec.facts, spec.question]))
    return fixed + len(tokenizer.encode(spec.answer)) + 1


def make_sample(task: str, rng_seed: int, target_len: int, tokenizer, filler_docs=None,
                **task_kwargs) -> Sample:
    """A Sample whose ``to_tokens(sample, tokenizer, target_len)`` is exactly target_len long.

    ``filler_docs``: Documents or strings to draw filler from (None: pseudo-words).
    ``task_kwargs`` go to the task builder, e.g. ``depth=0.5`` for needle, ``hops=6`` for
    var_track. The same (task, rng_seed, target_len, tokenizer, filler_docs, kwargs) always
    gives the same Sample. Raises DataError when target_len cannot hold facts + question + answer.
    """
    builder = _task_options(task, task_kwargs)
    rng = random.Random(f"clsa-synthetic/{task}/{rng_seed}")
    spec = builder(rng, **task_kwargs)
    fixed = [*spec.facts, spec.question]
    fixed_len = sum(len(ids) for ids in tokenizer.encode_many(fixed))
    budget = target_len - fixed_len - len(tokenizer.encode(spec.answer)) - 1
    if budget < 0:
        raise DataError(f"target_len={target_len} is too short for task {task!r}: its facts, "
                        f"question, answer and <eos> alone take {target_len - budget} tokens; "
                        "raise target_len or shrink the task (fewer needles, pairs or hops)")
    ids = _filler_ids(rng, tokenizer, filler_docs, budget)
    pieces, at = [], 0
    for size in _piece_sizes(spec.depths, budget):
        pieces.append(tokenizer.decode(ids[at:at + size]))
        at += size
    segments, prompt = [], []
    pos = 0
    for kind, text in _interleave(pieces, spec.facts, spec.question):
        segments.append([kind, pos, pos + len(text)])
        prompt.append(text)
        pos += len(text)
    meta = {**spec.meta, "seed": rng_seed, "target_len": target_len,
            "fact_depths": spec.depths, "segments": segments}
    return Sample(task, "".join(prompt), spec.answer, meta)


def _interleave(fillers: list[str], facts: list[str], question: str):
    for filler, fact in zip(fillers, facts):
        yield "filler", filler
        yield "fact", fact
    yield "filler", fillers[-1]
    yield "question", question


def _fit(ids: list[int], size: int, source: list[int]) -> list[int]:
    """``ids`` cut to ``size`` or extended by cycling ``source`` (filler tokens + newline)."""
    if len(ids) >= size:
        return ids[:size]
    need = size - len(ids)
    return ids + (source * (need // len(source) + 1))[:need]


def to_tokens(sample: Sample, tokenizer, target_len: int) -> TokenizedSample:
    """Token form of ``sample``: prompt + answer + <eos>, exactly ``target_len`` tokens.

    Each prompt segment is encoded on its own (a BPE never merges across a fact boundary), then
    the filler segments are cut or extended (cycling the sample's own filler) to their share of
    the filler budget given by the fact depths. ``loss_mask`` is True on answer tokens and <eos>.
    """
    meta = sample.meta
    texts = [sample.prompt[a:b] for _, a, b in meta["segments"]]
    kinds = [k for k, _, _ in meta["segments"]]
    encoded = tokenizer.encode_many(texts)
    encoded = [e.tolist() for e in encoded]
    answer = tokenizer.encode(sample.answer) + [tokenizer.eos_id]
    fixed_len = sum(len(e) for e, k in zip(encoded, kinds) if k != "filler") + len(answer)
    budget = target_len - fixed_len
    if budget < 0:
        raise DataError(f"target_len={target_len} is too short for this {sample.task!r} sample: "
                        f"its facts, question, answer and <eos> take {fixed_len} tokens")
    sizes = iter(_piece_sizes(meta["fact_depths"], budget))
    newline = tokenizer.encode("\n")
    source = [t for e, k in zip(encoded, kinds) if k == "filler" for t in e]
    if len(source) < budget:
        # Too little filler to cycle (or none): add deterministic pseudo-words.
        rng = random.Random(f"clsa-synthetic-extend/{sample.task}/{meta.get('seed')}")
        source = source + newline + _filler_ids(rng, tokenizer, None, budget)
    source = source + newline
    ids: list[int] = []
    for e, k in zip(encoded, kinds):
        ids += _fit(e, next(sizes), source) if k == "filler" else e
    prompt_len = len(ids)
    ids += answer
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[prompt_len:] = True
    return TokenizedSample(torch.tensor(ids, dtype=torch.long), mask)


def _lookup(pattern: str, prompt: str, what: str) -> str:
    found = re.findall(pattern, prompt, flags=re.MULTILINE)
    if len(found) != 1:
        raise DataError(f"prompt has {len(found)} facts for {what}, expected exactly 1")
    return found[0]


def check_answer(sample: Sample) -> str:
    """The answer recovered from ``sample.prompt`` by parsing alone (no meta, no task name)."""
    prompt = sample.prompt
    q = _QUESTION.search(prompt)
    if q is None:
        raise DataError("prompt does not end with '\\nQuestion: ...\\nAnswer: '")
    question = q.group(1)
    if m := re.fullmatch(r"What is the magic number for (\w+)\?", question):
        keys = [m.group(1)]
    elif m := re.fullmatch(r"What are the magic numbers for ([\w, ]+)\?", question):
        keys = m.group(1).split(", ")
    elif m := re.fullmatch(r"What are the values for ([\w, ]+)\?", question):
        return ", ".join(_lookup(rf"^{k} => (\d+)$", prompt, k) for k in m.group(1).split(", "))
    elif m := re.fullmatch(r"What is the value of (\w+)\?", question):
        assigned: dict[str, str] = {}
        for name, rhs in re.findall(r"^VAR (\w+) = (\w+)\.$", prompt, flags=re.MULTILINE):
            if name in assigned:
                raise DataError(f"variable {name} is assigned twice")
            assigned[name] = rhs
        value = m.group(1)
        for _ in range(len(assigned) + 1):
            if value.isdigit():
                return value
            if value not in assigned:
                raise DataError(f"variable {value} is never assigned")
            value = assigned[value]
        raise DataError("variable chain has a cycle")
    else:
        raise DataError(f"unrecognised question {question!r}")
    return ", ".join(_lookup(rf"The magic number for {k} is (\d+)\.", prompt, k) for k in keys)
