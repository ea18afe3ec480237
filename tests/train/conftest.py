"""Shared fixtures for the data-pipeline tests: small stdlib slices and a tiny trained BPE."""

import pytest

from clsa.train import ByteTokenizer, stdlib_corpus, train_bpe
from tests.train.helpers import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 12-file stdlib corpus folder for trainer runs."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def small_docs():
    """The first 50 stdlib files by name (about 0.8 MB): enough text, fast to tokenize."""
    return stdlib_corpus(include_tests=False)[:50]


@pytest.fixture(scope="session")
def bpe_tok(small_docs):
    """A byte-level BPE with vocab 512 trained on ~200 KB of stdlib source."""
    docs, size = [], 0
    for d in small_docs:
        docs.append(d)
        size += len(d.text)
        if size > 200_000:
            break
    return train_bpe(docs, vocab_size=512)


@pytest.fixture(params=["byte", "bpe"])
def tokenizer(request, bpe_tok):
    return ByteTokenizer() if request.param == "byte" else bpe_tok
