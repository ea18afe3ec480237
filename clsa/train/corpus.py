"""Text corpora for training: the embedded stdlib corpus, user folders, a by-file train/val split.

Format legend
    Document   (name: str, text: str)   name is a posix path relative to the corpus root;
                                         a .jsonl record is named "<file>:<line, 6 digits>"
    Corpus     list[Document] sorted by name (so every run sees the same order), plus
               ``skipped``: names of files left out as binary, undecodable or empty

Usage
    from clsa.train import stdlib_corpus, folder_corpus, split_train_val
    corpus = stdlib_corpus()                      # ~1.8k .py files, ~30 MB, no download
    corpus = folder_corpus("data/my_texts")       # .txt/.md/.py files, .jsonl {"text": ...}
    train, val = split_train_val(corpus, val_fraction=0.02, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".py")
JSONL_SUFFIX = ".jsonl"
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + (JSONL_SUFFIX,)
# Never training text: third-party packages and bytecode caches.
_STDLIB_ALWAYS_SKIP = {"site-packages", "dist-packages", "__pycache__"}
# Test suites and tools: about two thirds of the stdlib's bytes; include_tests=False drops them.
_STDLIB_TEST_DIRS = {"test", "tests", "idlelib", "lib2to3"}


class DataError(ValueError):
    """A corpus, tokenizer or data-pipeline input is unusable; the message names the fix."""


@dataclass(frozen=True)
class Document:
    """One training text: ``name`` identifies it (split hashing, error messages), ``text`` is it."""

    name: str
    text: str


class Corpus(list):
    """A list of Documents sorted by name; ``skipped`` lists the files that could not be used."""

    def __init__(self, docs=(), skipped=()):
        super().__init__(sorted(docs, key=lambda d: d.name))
        self.skipped = list(skipped)

    @property
    def num_chars(self) -> int:
        return sum(len(d.text) for d in self)

    def __repr__(self) -> str:
        return f"Corpus({len(self)} documents, {self.num_chars} chars, {len(self.skipped)} skipped)"


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it is binary (NUL bytes) or not valid UTF-8."""
    data = path.read_bytes()
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def stdlib_corpus(include_tests: bool = True) -> Corpus:
    """Every ``.py`` file of the running interpreter's standard library, as a Corpus.

    ``stdlib_corpus()`` is ~1.8k files / ~30 MB on CPython 3.11; ``include_tests=False`` drops the
    test, tests, idlelib and lib2to3 folders (~600 files / ~11 MB). site-packages is never read.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"the standard library folder {root} does not exist; pass a folder to "
                        "folder_corpus() instead")
    skip_dirs = _STDLIB_ALWAYS_SKIP | (set() if include_tests else _STDLIB_TEST_DIRS)
    docs, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        for fname in filenames:
            if not fname.endswith(".py"):
                continue
            path = Path(dirpath) / fname
            name = path.relative_to(root).as_posix()
            text = _read_text(path)
            if text is None or not text.strip():
                skipped.append(name)
            else:
                docs.append(Document(name, text))
    if not docs:
        raise DataError(f"no readable .py files under the standard library folder {root}; pass a "
                        "folder to folder_corpus() instead")
    return Corpus(docs, skipped)


def _jsonl_documents(path: Path, name: str) -> tuple[list[Document], bool]:
    """Documents of one .jsonl file (one per non-blank line) and whether the file was decodable."""
    text = _read_text(path)
    if text is None:
        return [], False
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {lineno}: not valid JSON ({e.msg}); every line of a "
                            '.jsonl corpus must be one object like {"text": "..."}') from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f'{path} line {lineno}: expected an object with a string "text" '
                            f"field, got {type(record).__name__}"
                            + (f" with keys {sorted(record)}" if isinstance(record, dict) else ""))
        if record["text"].strip():
            docs.append(Document(f"{name}:{lineno:06d}", record["text"]))
    return docs, True


def folder_corpus(path: str | os.PathLike) -> Corpus:
    """A Corpus from a folder (recursive) of .txt/.md/.py files and/or .jsonl files, or one file.

    Every .txt/.md/.py file is one Document named by its path relative to the folder; every
    non-blank line of a .jsonl file must be ``{"text": "..."}`` and becomes one Document.
    Binary or non-UTF-8 files are skipped (listed in ``corpus.skipped`` and logged); empty texts
    are skipped too. Raises DataError when the path is missing, holds no supported file, when a
    .jsonl line is bad (file and line named) or when no file yields any text.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"corpus path {root} does not exist; pass a folder of "
                        f"{'/'.join(SUPPORTED_SUFFIXES)} files or one such file")
    if root.is_file():
        if root.suffix not in SUPPORTED_SUFFIXES:
            raise DataError(f"corpus file {root} has suffix {root.suffix!r}; supported suffixes "
                            f"are {', '.join(SUPPORTED_SUFFIXES)}")
        files, base = [root], root.parent
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUPPORTED_SUFFIXES)
        base = root
        if not files:
            others = sum(1 for p in root.rglob("*") if p.is_file())
            raise DataError(f"corpus folder {root} has no {'/'.join(SUPPORTED_SUFFIXES)} files "
                            f"({others} other files); add text files or point at another folder")
    docs, skipped = [], []
    for file in files:
        name = file.relative_to(base).as_posix()
        if file.suffix == JSONL_SUFFIX:
            file_docs, decodable = _jsonl_documents(file, name)
            if not decodable or not file_docs:
                skipped.append(name)
            docs.extend(file_docs)
            continue
        text = _read_text(file)
        if text is None or not text.strip():
            skipped.append(name)
        else:
            docs.append(Document(name, text))
    if not docs:
        raise DataError(f"corpus {root}: none of its {len(files)} files holds usable text "
                        f"(all binary, not UTF-8 or empty: {', '.join(skipped[:5])}"
                        f"{', ...' if len(skipped) > 5 else ''}); use UTF-8 text files")
    if skipped:
        log.warning("corpus %s: skipped %d of %d files (binary, not UTF-8 or empty)",
                    root, len(skipped), len(files))
    return Corpus(docs, skipped)


def _split_key(name: str, seed: int) -> bytes:
    # blake2b, not hash(): Python salts str hashes per process, which would change the split.
    return hashlib.blake2b(f"{seed}\x00{name}".encode("utf-8"), digest_size=16).digest()


def split_train_val(corpus: list[Document], val_fraction: float = 0.02,
                    seed: int = 0) -> tuple[Corpus, Corpus]:
    """Split by document: ``(train, val)``, each a Corpus sorted by name.

    Documents are ranked by a keyed hash of (seed, name); the first ``ceil(val_fraction * n)``
    form the validation side. The same seed gives the same split in every process; a document
    is wholly on one side. Raises DataError when either side would be empty or names repeat.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be in (0, 1), e.g. 0.02")
    names = [d.name for d in corpus]
    if len(set(names)) != len(names):
        raise DataError("corpus has repeated document names; the split is by name, so names "
                        "must be unique")
    n_val = math.ceil(val_fraction * len(corpus))
    if len(corpus) < 2 or n_val >= len(corpus):
        raise DataError(f"cannot split {len(corpus)} documents with val_fraction={val_fraction}: "
                        "train or validation would be empty; add documents or lower val_fraction")
    ranked = sorted(corpus, key=lambda d: _split_key(d.name, seed))
    return Corpus(ranked[n_val:]), Corpus(ranked[:n_val])
