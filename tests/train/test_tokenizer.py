"""Byte and BPE tokenizers: round trips, specials, save/load, errors."""

import json

import pytest
import torch

from clsa.train import (SPECIAL_TOKENS, BPETokenizer, ByteTokenizer, DataError, Tokenizer,
                        load_tokenizer, train_bpe)

TEXTS = ["", "hello world", "héllo wörld, 世界 🚀\n\ttabs", "def f(x):\n    return x ** 2\n"]


def test_byte_tokenizer_ids_and_round_trip():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id, tok.sep_id) == (260, 256, 257,
                                                                                 258, 259)
    assert tok.encode("A€") == [65, 0xE2, 0x82, 0xAC]
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text
        assert tok.encode_many([text])[0].tolist() == ids


def test_byte_decode_skips_specials_and_replaces_bad_utf8():
    tok = ByteTokenizer()
    assert tok.decode([256, 104, 105, 257, 258, 259]) == "hi"
    assert tok.decode([104, 0xE2, 0x82]) == "h\ufffd"
    assert tok.decode([-100, 104, 300, 105]) == "hi"


def test_byte_save_load(tmp_path):
    ByteTokenizer().save(tmp_path / "tok")
    assert isinstance(load_tokenizer(tmp_path / "tok"), ByteTokenizer)
    assert isinstance(load_tokenizer(tmp_path / "tok" / "clsa_tokenizer.json"), ByteTokenizer)
    assert isinstance(load_tokenizer("byte"), ByteTokenizer)
    assert isinstance(ByteTokenizer(), Tokenizer)


def test_bpe_trains_with_specials_first(bpe_tok):
    assert bpe_tok.vocab_size == 512
    assert [bpe_tok.bos_id, bpe_tok.eos_id, bpe_tok.pad_id, bpe_tok.sep_id] == [0, 1, 2, 3]
    assert SPECIAL_TOKENS == ("<bos>", "<eos>", "<pad>", "<sep>")
    assert isinstance(bpe_tok, Tokenizer)
    code = "import os\nfor name in os.listdir(path):\n    print(name)\n"
    assert len(bpe_tok.encode(code)) < 0.8 * len(code.encode())


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_round_trip(bpe_tok, text):
    ids = bpe_tok.encode(text)
    assert all(0 <= i < 512 for i in ids) and not set(ids) & {0, 1, 2, 3}
    assert bpe_tok.decode(ids) == text
    assert bpe_tok.decode([bpe_tok.bos_id, *ids, bpe_tok.eos_id, -100, 512]) == text
    assert bpe_tok.encode_many([text, "x"])[0].tolist() == ids


def test_bpe_special_strings_in_text_are_plain_text(bpe_tok):
    ids = bpe_tok.encode("a <eos> b <pad>")
    assert bpe_tok.eos_id not in ids and bpe_tok.pad_id not in ids
    assert bpe_tok.decode(ids) == "a <eos> b <pad>"


def test_bpe_save_load_identical_ids(bpe_tok, tmp_path, small_docs):
    bpe_tok.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "clsa_tokenizer.json").read_text())
    assert meta["kind"] == "bpe"
    text = small_docs[7].text[:5000] + " ünïcode ✓"
    for loaded in (load_tokenizer(tmp_path / "tok"),
                   load_tokenizer(tmp_path / "tok" / "tokenizer.json"),
                   BPETokenizer.from_file(tmp_path / "tok" / "tokenizer.json")):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.encode(text) == bpe_tok.encode(text)
        assert loaded.vocab_size == 512 and loaded.eos_id == bpe_tok.eos_id


def test_bpe_user_file_with_other_special_names(tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HF(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(["some text for a tiny tokenizer"] * 10, trainer=trainer)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    eos = hf.token_to_id("<|endoftext|>")
    assert tok.eos_id == tok.bos_id == tok.pad_id == tok.sep_id == eos
    with pytest.raises(DataError, match="not in the tokenizer"):
        BPETokenizer.from_file(tmp_path / "tokenizer.json", eos="</s>")


def test_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="at least 260"):
        train_bpe(["abc"], vocab_size=259)
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nothing")
    with pytest.raises(DataError, match="neither"):
        load_tokenizer(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        BPETokenizer.from_file(tmp_path / "tokenizer.json")
    (tmp_path / "clsa_tokenizer.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(DataError, match="not a Hugging Face"):
        BPETokenizer.from_file(tmp_path / "tokenizer.json")
