"""Corpus loading (stdlib, folders, .jsonl), the by-file split, and every bad-input error."""

import json

import pytest

from clsa.train import Corpus, DataError, Document, folder_corpus, split_train_val, stdlib_corpus


def test_stdlib_corpus_found_and_non_trivial():
    corpus = stdlib_corpus()
    names = [d.name for d in corpus]
    assert isinstance(corpus, Corpus) and len(corpus) > 500
    assert corpus.num_chars > 5_000_000
    assert names == sorted(names) and len(set(names)) == len(names)
    assert "os.py" in names and "json/__init__.py" in names
    assert not any("site-packages" in n or "__pycache__" in n for n in names)
    assert all(d.text.strip() for d in corpus)
    lean = stdlib_corpus(include_tests=False)
    assert 0 < len(lean) < len(corpus)
    assert not any(n.startswith(("test/", "idlelib/", "lib2to3/")) for n in (d.name for d in lean))


def _docs(n):
    return Corpus([Document(f"doc{i:03d}.py", f"text {i}") for i in range(n)])


def test_split_deterministic_by_seed_and_disjoint():
    corpus = _docs(200)
    train, val = split_train_val(corpus, val_fraction=0.1, seed=0)
    again_train, again_val = split_train_val(corpus, val_fraction=0.1, seed=0)
    assert [d.name for d in val] == [d.name for d in again_val]
    assert [d.name for d in train] == [d.name for d in again_train]
    assert len(val) == 20 and len(train) == 180
    train_names, val_names = {d.name for d in train}, {d.name for d in val}
    assert not train_names & val_names
    assert train_names | val_names == {d.name for d in corpus}
    assert [d.name for d in val] == sorted(val_names)
    _, other_val = split_train_val(corpus, val_fraction=0.1, seed=1)
    assert {d.name for d in other_val} != val_names


def test_split_of_real_corpus_keeps_validation_out_of_training(small_docs):
    train, val = split_train_val(small_docs, val_fraction=0.02, seed=3)
    assert len(val) == 1 and len(train) == 49
    assert val[0].name not in {d.name for d in train}


@pytest.mark.parametrize("n, frac", [(1, 0.5), (0, 0.5), (10, 0.95), (10, 0.0), (10, 1.0)])
def test_split_rejects_empty_sides(n, frac):
    with pytest.raises(DataError):
        split_train_val(_docs(n), val_fraction=frac)


def test_split_rejects_repeated_names():
    with pytest.raises(DataError, match="repeated"):
        split_train_val([Document("a", "x"), Document("a", "y"), Document("b", "z")], 0.3)


def test_folder_corpus_text_and_jsonl(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "sub" / "a.md").write_text("# heading\nbody")
    (tmp_path / "c.py").write_text("x = 1\n")
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "third", "id": 3}) + "\n")
    (tmp_path / "notes.csv").write_text("ignored")
    corpus = folder_corpus(tmp_path)
    assert [d.name for d in corpus] == ["b.txt", "c.py", "d.jsonl:000001", "d.jsonl:000003",
                                        "sub/a.md"]
    assert corpus[2].text == "first" and corpus[4].text == "# heading\nbody"
    assert corpus.skipped == []


def test_folder_corpus_single_files(tmp_path):
    (tmp_path / "one.txt").write_text("hello")
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert folder_corpus(tmp_path / "one.txt") == [Document("one.txt", "hello")]
    assert [d.text for d in folder_corpus(str(tmp_path / "rows.jsonl"))] == ["a", "b"]


def test_folder_corpus_skips_binary_and_undecodable(tmp_path):
    (tmp_path / "good.txt").write_text("usable text")
    (tmp_path / "nul.txt").write_bytes(b"abc\x00def")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "blank.md").write_text("  \n")
    corpus = folder_corpus(tmp_path)
    assert [d.name for d in corpus] == ["good.txt"]
    assert sorted(corpus.skipped) == ["blank.md", "latin1.txt", "nul.txt"]


def test_folder_corpus_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        folder_corpus(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has no"):
        folder_corpus(empty)
    (empty / "data.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"1 other files"):
        folder_corpus(empty)
    with pytest.raises(DataError, match="suffix"):
        folder_corpus(empty / "data.csv")
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "a.txt").write_bytes(b"\x00\x01\x02")
    (binary / "b.py").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DataError, match="none of its 2 files"):
        folder_corpus(binary)


def test_jsonl_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: not valid JSON"):
        folder_corpus(tmp_path)
    bad.write_text('{"text": "ok"}\n\n{"body": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 3: .*\"text\".*keys \['body'\]"):
        folder_corpus(bad)
    bad.write_text('["text"]\n')
    with pytest.raises(DataError, match=r"line 1: .*got list"):
        folder_corpus(bad)
    bad.write_text('{"text": 5}\n')
    with pytest.raises(DataError, match=r"line 1"):
        folder_corpus(bad)
