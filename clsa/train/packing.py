"""Deterministic, resumable, rank-sharded packed token stream for LM training.

Format legend
    stream      per epoch, every document's tokens followed by <eos>, documents in an order
                shuffled by (seed, epoch); epochs follow each other with no gap, so the stream
                is endless and every epoch holds the same N tokens
    window k    stream[k*T : k*T + T + 1]  (consecutive windows share one token, so every
                stream token is a target exactly once); T = seq_len
    batch b     windows b*B .. b*B + B - 1; rank r takes batches r, r + W, r + 2W, ...
    input_ids   [B, T] int64   window[:-1]
    labels      [B, T] int64   window[1:], -100 where loss_mask is False
    loss_mask   [B, T] bool    False on <pad> and on the prompt of synthetic rows
    synthetic   [B] bool       the row is a synthetic task sample (its trained tokens: the answer)

With ``synthetic_mix`` = p, each window is, with probability p (drawn from (seed, k)), replaced
by a synthetic task sample of ``synthetic_len`` tokens padded with <pad>; only its answer and
<eos> are trained on. With ``synthetic_min_len`` below ``synthetic_len`` each sample's length is
drawn log-uniformly from [max(synthetic_min_len, m), synthetic_len], m = the sample's own length
without filler (``synthetic.min_length``): short haystacks teach the retrieval heads fast, long
ones make them reach far. Everything is a function of (seed, k), so the state
is one step counter.

Usage
    stream = PackedStream(train_docs, ByteTokenizer(), seq_len=1024, batch_size=8, seed=0,
                          rank=rank, world_size=world, synthetic_mix=0.1, synthetic_len=1024,
                          synthetic_min_len=256)
    batch = stream.next_batch()          # {"input_ids", "labels", "loss_mask"}
    state = stream.state_dict()          # save with the checkpoint
    stream.load_state_dict(state)        # continue with exactly the batches that came next
"""

from __future__ import annotations

import numpy as np
import torch

from clsa.train.corpus import DataError, Document
from clsa.train.synthetic import TASKS, make_sample, min_length, to_tokens


class PackedStream:
    """Packed [batch_size, seq_len] LM batches from ``docs``; see the module legend.

    ``docs``: Documents or strings. ``synthetic_tasks``: task names, or a dict name -> options
    for make_sample (default: every task with its defaults). ``synthetic_len`` defaults to
    seq_len. All documents are tokenized once, up front (ByteTokenizer: ~0.3 s for 30 MB).
    """

    def __init__(self, docs, tokenizer, seq_len: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, synthetic_mix: float = 0.0,
                 synthetic_tasks=None, synthetic_len: int | None = None,
                 synthetic_min_len: int | None = None):
        if len(docs) == 0:
            raise DataError("PackedStream got an empty document list; pass a non-empty corpus")
        if seq_len < 1 or batch_size < 1:
            raise DataError(f"seq_len={seq_len} and batch_size={batch_size} must both be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank={rank} must be in [0, world_size={world_size})")
        if not 0.0 <= synthetic_mix <= 1.0:
            raise DataError(f"synthetic_mix={synthetic_mix} must be a probability in [0, 1]")
        self.tokenizer = tokenizer
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.synthetic_mix = float(synthetic_mix)
        self.synthetic_len = seq_len if synthetic_len is None else synthetic_len
        if not 1 <= self.synthetic_len <= seq_len:
            raise DataError(f"synthetic_len={synthetic_len} must be in [1, seq_len={seq_len}]")
        self.synthetic_min_len = (self.synthetic_len if synthetic_min_len is None
                                  else synthetic_min_len)
        if not 1 <= self.synthetic_min_len <= self.synthetic_len:
            raise DataError(f"synthetic_min_len={synthetic_min_len} must be in "
                            f"[1, synthetic_len={self.synthetic_len}]")
        if synthetic_tasks is None:
            synthetic_tasks = list(TASKS)
        if not isinstance(synthetic_tasks, dict):
            synthetic_tasks = {name: {} for name in synthetic_tasks}
        if not synthetic_tasks:
            raise DataError("synthetic_tasks is empty; pass task names from "
                            f"{sorted(TASKS)} or None for all")
        unknown = sorted(set(synthetic_tasks) - set(TASKS))
        if unknown:
            raise DataError(f"unknown synthetic tasks {unknown}; choose from {sorted(TASKS)}")
        self.synthetic_tasks = {name: dict(opts) for name, opts in synthetic_tasks.items()}

        self._texts = [d.text if isinstance(d, Document) else d for d in docs]
        dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
        eos = np.array([tokenizer.eos_id], dtype=dtype)
        arrays = tokenizer.encode_many(self._texts)
        # One flat array in document order, each document followed by <eos>; offsets[i] is
        # where document i starts. An epoch is a permuted gather of these slices.
        lengths = np.array([len(a) + 1 for a in arrays], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._flat = np.concatenate([x for a in arrays for x in (a.astype(dtype), eos)])
        self.tokens_per_epoch = int(self._offsets[-1])
        if self.tokens_per_epoch < seq_len + 1:
            raise DataError(f"seq_len={seq_len} needs windows of {seq_len + 1} tokens but the "
                            f"{len(docs)} documents hold only {self.tokens_per_epoch} tokens "
                            "(with <eos> separators); lower seq_len or add documents")
        if self.synthetic_mix > 0:
            for name, opts in self.synthetic_tasks.items():
                # Fail now, not mid-training, when synthetic_len cannot hold a task.
                make_sample(name, 0, self.synthetic_len, tokenizer, None, **opts)
        self._epochs: dict[int, np.ndarray] = {}
        self.step = 0

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._epochs:
            order = np.random.default_rng([self.seed, e]).permutation(len(self._texts))
            off = self._offsets
            self._epochs[e] = np.concatenate([self._flat[off[i]:off[i + 1]] for i in order])
            # Windows only move forward, and one spans at most two epochs.
            for old in [k for k in self._epochs if k < e - 1]:
                del self._epochs[old]
        return self._epochs[e]

    def _text_window(self, k: int) -> np.ndarray:
        T, N = self.seq_len, self.tokens_per_epoch
        e, pos = divmod(k * T, N)
        head = self._epoch(e)[pos:pos + T + 1]
        if len(head) == T + 1:
            return head
        return np.concatenate([head, self._epoch(e + 1)[:T + 1 - len(head)]])

    def _window(self, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Tokens [T + 1], per-token loss mask [T + 1] of global window ``k``, is-synthetic."""
        T = self.seq_len
        if self.synthetic_mix > 0:
            rng = np.random.default_rng([self.seed, k, 1])
            if rng.random() < self.synthetic_mix:
                names = list(self.synthetic_tasks)
                name = names[int(rng.integers(len(names)))]
                seed, n = int(rng.integers(2**62)), self.synthetic_len
                if self.synthetic_min_len < n:  # drawn only then: fixed-length streams unchanged
                    opts = self.synthetic_tasks[name]
                    lo = max(self.synthetic_min_len,
                             min_length(name, seed, self.tokenizer, **opts))
                    n = min(int(np.exp(rng.uniform(np.log(min(lo, n)), np.log(n + 1)))), n)
                sample = make_sample(name, seed, n, self.tokenizer, self._texts,
                                     **self.synthetic_tasks[name])
                ids, mask = to_tokens(sample, self.tokenizer, n)
                tokens = np.full(T + 1, self.tokenizer.pad_id, dtype=np.int64)
                keep = np.zeros(T + 1, dtype=bool)
                tokens[:len(ids)] = ids.numpy()
                keep[:len(mask)] = mask.numpy()
                return tokens, keep, True
        return self._text_window(k).astype(np.int64), np.ones(T + 1, dtype=bool), False

    @property
    def epoch(self) -> int:
        """Epoch of the first token of the next batch (for logging)."""
        k = (self.step * self.world_size + self.rank) * self.batch_size
        return k * self.seq_len // self.tokens_per_epoch

    def next_batch(self) -> dict[str, torch.Tensor]:
        """The next batch of this rank: input_ids, labels, loss_mask [B, T]; synthetic [B]."""
        first = (self.step * self.world_size + self.rank) * self.batch_size
        rows = [self._window(k) for k in range(first, first + self.batch_size)]
        tokens = torch.from_numpy(np.stack([r[0] for r in rows]))
        mask = torch.from_numpy(np.stack([r[1] for r in rows]))[:, 1:]
        labels = tokens[:, 1:].masked_fill(~mask, -100)
        self.step += 1
        return {"input_ids": tokens[:, :-1].contiguous(), "labels": labels, "loss_mask": mask,
                "synthetic": torch.tensor([r[2] for r in rows])}

    def __iter__(self):
        while True:
            yield self.next_batch()

    def _fingerprint(self) -> dict:
        fp = {
            "seed": self.seed, "seq_len": self.seq_len, "batch_size": self.batch_size,
            "rank": self.rank, "world_size": self.world_size, "num_docs": len(self._texts),
            "tokens_per_epoch": self.tokens_per_epoch, "vocab_size": self.tokenizer.vocab_size,
            "synthetic_mix": self.synthetic_mix, "synthetic_len": self.synthetic_len,
            "synthetic_tasks": self.synthetic_tasks,
        }
        if self.synthetic_min_len != self.synthetic_len:  # absent from fixed-length streams' states
            fp["synthetic_min_len"] = self.synthetic_min_len
        return fp

    def state_dict(self) -> dict:
        """The exact stream position plus the settings it is only valid for."""
        return {"step": self.step, **self._fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["step"]``; raises DataError when the stream settings differ."""
        mine = self._fingerprint()
        keys = [k for k in {**mine, **state} if k != "step"]
        diff = [f"{k}: saved {state.get(k)!r}, now {mine.get(k)!r}" for k in keys
                if state.get(k) != mine.get(k)]
        if diff:
            raise DataError("stream state does not match this PackedStream (" + "; ".join(diff)
                            + "); build the stream with the saved settings and data")
        self.step = int(state["step"])
