"""Training data: corpora, tokenizers, synthetic long-context tasks and the packed token stream.

    from clsa.train import stdlib_corpus, split_train_val, ByteTokenizer, PackedStream
    train, val = split_train_val(stdlib_corpus(), val_fraction=0.02, seed=0)
    stream = PackedStream(train, ByteTokenizer(), seq_len=1024, batch_size=8, seed=0)
"""

from clsa.train.corpus import (Corpus, DataError, Document, folder_corpus, split_train_val,
                               stdlib_corpus)
from clsa.train.packing import PackedStream
from clsa.train.synthetic import (TASKS, Sample, TokenizedSample, check_answer, make_sample,
                                  to_tokens)
from clsa.train.tokenizer import (SPECIAL_TOKENS, BPETokenizer, ByteTokenizer, Tokenizer,
                                  load_tokenizer, train_bpe)

__all__ = [
    "BPETokenizer", "ByteTokenizer", "Corpus", "DataError", "Document", "PackedStream",
    "SPECIAL_TOKENS", "Sample", "TASKS", "TokenizedSample", "Tokenizer", "check_answer",
    "folder_corpus", "load_tokenizer", "make_sample", "split_train_val", "stdlib_corpus",
    "to_tokens", "train_bpe",
]
