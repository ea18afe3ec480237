"""Tokenizers behind one small interface: byte-level (no files) and byte-level BPE (HF tokenizers).

Interface (both classes)
    encode(text) -> list[int]                     no special tokens added
    encode_many(texts) -> list[np.ndarray]        int32 arrays, the fast path for packing
    decode(ids) -> str                            special ids skipped, bad UTF-8 replaced
    vocab_size, bos_id, eos_id, pad_id, sep_id    ints
    save(dir)                                     writes clsa_tokenizer.json (+ tokenizer.json)

Byte ids: 0..255 = the UTF-8 bytes, 256 <bos>, 257 <eos>, 258 <pad>, 259 <sep> (vocab 260).

Usage
    tok = ByteTokenizer()
    tok = train_bpe(corpus, vocab_size=8192); tok.save("runs/tok")
    tok = load_tokenizer("runs/tok")          # either kind; or a tokenizer.json; or "byte"
    tok = BPETokenizer.from_file("tokenizer.json")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import numpy as np

from clsa.train.corpus import DataError, Document

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>", "<sep>")
META_FILE = "clsa_tokenizer.json"
HF_FILE = "tokenizer.json"
# Names tried, in order, when a user's tokenizer.json lacks ours (GPT-2, Llama, BERT styles).
_FALLBACK_NAMES = {
    "bos": ("<bos>", "<s>", "<|begin_of_text|>", "<|endoftext|>", "[CLS]"),
    "eos": ("<eos>", "</s>", "<|end_of_text|>", "<|endoftext|>", "[SEP]"),
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
    "sep": ("<sep>", "[SEP]"),
}


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline, training and evaluation need from a tokenizer."""

    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    sep_id: int

    def encode(self, text: str) -> list[int]: ...
    def encode_many(self, texts: list[str]) -> list[np.ndarray]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def save(self, directory: str | os.PathLike) -> None: ...


def _ids_list(ids) -> list[int]:
    """Plain ints from a list, numpy array or torch tensor."""
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 plus four specials; needs no files and never fails to encode."""

    kind = "byte"
    vocab_size = 260
    bos_id, eos_id, pad_id, sep_id = 256, 257, 258, 259

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_many(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int32) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the byte ids; every other id (specials, -100, ids of a padded model vocab) is
        dropped, so sampling from an untrained model never crashes decoding."""
        return bytes(i for i in _ids_list(ids) if 0 <= i < 256).decode("utf-8", errors="replace")

    def save(self, directory: str | os.PathLike) -> None:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / META_FILE).write_text(json.dumps({"kind": self.kind}, indent=2) + "\n")

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=260)"


class BPETokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` behind the clsa interface.

    Special ids are looked up by name: ours (<bos> <eos> <pad> <sep>) first, then common
    alternatives (</s>, <|endoftext|>, [PAD], ...); pass ``bos=``/``eos=``/``pad=``/``sep=`` token
    strings to choose others. A missing pad or sep falls back to eos (those positions are masked
    out of the loss anyway); a missing bos falls back to eos too. A missing eos is an error.
    Special-token strings inside ordinary text are encoded as plain text, never as specials.
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer, bos: str | None = None, eos: str | None = None,
                 pad: str | None = None, sep: str | None = None):
        self.hf = hf_tokenizer
        # Without this, a corpus containing the text "<eos>" would inject real EOS ids.
        self.hf.encode_special_tokens = True
        self.vocab_size = self.hf.get_vocab_size(with_added_tokens=True)
        chosen = {"bos": bos, "eos": eos, "pad": pad, "sep": sep}
        self.special_tokens: dict[str, str] = {}
        for role in ("eos", "bos", "pad", "sep"):
            token = self._find(role, chosen[role])
            if token is None and role == "eos":
                raise DataError("tokenizer has no end-of-sequence token (tried "
                                f"{', '.join(_FALLBACK_NAMES['eos'])}); pass eos='<your token>'")
            self.special_tokens[role] = token if token is not None else self.special_tokens["eos"]
        self.bos_id, self.eos_id, self.pad_id, self.sep_id = (
            self.hf.token_to_id(self.special_tokens[r]) for r in ("bos", "eos", "pad", "sep"))
        self._special_ids = {self.bos_id, self.eos_id, self.pad_id, self.sep_id}

    def _find(self, role: str, explicit: str | None) -> str | None:
        if explicit is not None:
            if self.hf.token_to_id(explicit) is None:
                raise DataError(f"{role} token {explicit!r} is not in the tokenizer's vocabulary")
            return explicit
        return next((t for t in _FALLBACK_NAMES[role] if self.hf.token_to_id(t) is not None), None)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **special_tokens) -> "BPETokenizer":
        """Load a Hugging Face ``tokenizer.json``; keyword arguments as in the constructor."""
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if not path.is_file():
            raise DataError(f"tokenizer file {path} does not exist; pass the path of a "
                            "tokenizer.json (or train one with train_bpe)")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:
            raise DataError(f"{path} is not a Hugging Face tokenizer.json ({e})") from None
        return cls(hf, **special_tokens)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[np.ndarray]:
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; specials and ids outside [0, vocab_size) (-100, padding) dropped."""
        keep = [i for i in _ids_list(ids)
                if 0 <= i < self.vocab_size and i not in self._special_ids]
        return self.hf.decode(keep, skip_special_tokens=True)

    def save(self, directory: str | os.PathLike) -> None:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(out / HF_FILE))
        meta = {"kind": self.kind, "special_tokens": self.special_tokens}
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, specials={self.special_tokens})"


def train_bpe(docs: Iterable[Document | str], vocab_size: int, min_frequency: int = 2,
              show_progress: bool = False) -> BPETokenizer:
    """Train a byte-level BPE on ``docs`` (Documents or strings); ids 0..3 are the specials.

    ``train_bpe(train_corpus, vocab_size=8192)``; vocab_size counts the 256 byte symbols and the
    four specials, so it must be at least 260. Every byte sequence stays encodable.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise DataError(f"vocab_size={vocab_size} is too small for byte-level BPE: it needs 256 "
                        f"byte symbols + {len(SPECIAL_TOKENS)} specials, so at least 260")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    texts = (d.text if isinstance(d, Document) else d for d in docs)
    hf.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(hf)


def load_tokenizer(path: str | os.PathLike) -> ByteTokenizer | BPETokenizer:
    """Restore a tokenizer saved with ``save(dir)``.

    ``path`` is a folder holding clsa_tokenizer.json (and tokenizer.json for BPE), a folder or
    file that is a plain Hugging Face tokenizer.json, a clsa_tokenizer.json itself, or the string
    "byte" for ByteTokenizer.
    """
    p = Path(path)
    if str(path) == "byte" and not p.exists():
        return ByteTokenizer()
    if not p.exists():
        raise DataError(f"tokenizer path {p} does not exist; pass a folder written by "
                        "tokenizer.save(dir), a tokenizer.json, or 'byte'")
    meta_path = p / META_FILE if p.is_dir() else p
    if p.is_dir() and not meta_path.exists():
        if (p / HF_FILE).exists():
            return BPETokenizer.from_file(p / HF_FILE)
        raise DataError(f"folder {p} has neither {META_FILE} nor {HF_FILE}; save a tokenizer "
                        "there first with tokenizer.save(dir)")
    if meta_path.name != META_FILE:
        return BPETokenizer.from_file(meta_path)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path} is not valid JSON ({e.msg}); re-save the tokenizer") from None
    kind = meta.get("kind")
    if kind == ByteTokenizer.kind:
        return ByteTokenizer()
    if kind == BPETokenizer.kind:
        return BPETokenizer.from_file(meta_path.parent / HF_FILE, **meta.get("special_tokens", {}))
    raise DataError(f"{meta_path}: unknown tokenizer kind {kind!r}; expected 'byte' or 'bpe'")
