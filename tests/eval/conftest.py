"""Fixtures for the evaluation tests: a saved debug checkpoint and single-threaded torch."""

import pytest

from clsa.train import ByteTokenizer
from tests.eval.helpers import debug_model


@pytest.fixture(scope="session")
def debug_ckpt(tmp_path_factory):
    """A clsa checkpoint folder as the trainer writes it: save_pretrained + the tokenizer."""
    path = tmp_path_factory.mktemp("ckpt") / "model"
    debug_model().save_pretrained(path)
    ByteTokenizer().save(path)
    return path


