"""Fixtures for the evaluation tests: a saved debug checkpoint and single-threaded torch."""

import pytest
import torch

from clsa.train import ByteTokenizer
from tests.eval.helpers import debug_model


@pytest.fixture(scope="session")
def debug_ckpt(tmp_path_factory):
    """A clsa checkpoint folder as the trainer writes it: save_pretrained + the tokenizer."""
    path = tmp_path_factory.mktemp("ckpt") / "model"
    debug_model().save_pretrained(path)
    ByteTokenizer().save(path)
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: one thread is fastest, and on a shared 2-core box extra threads
    # spin against other processes (a 4 ms decode step became 130 ms).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
