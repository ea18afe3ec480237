"""Test-wide setup: Triton interpreter on CPU, seeds, NaN-filled torch.empty, the gpu marker."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before anything imports triton: kernels then run in the CPU interpreter.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Every test model is tiny: one thread is fastest, and on a shared 2-core box extra threads spin
# against other processes (a 4 ms decode step became 130 ms). Set once for the whole session, so
# module-scoped fixtures (trained backbones) get it too.
torch.set_num_threads(1)

_empty = torch.empty


def _nan_empty(*args, **kwargs):
    """torch.empty filled with NaN (floats) or a sentinel (ints): an unwritten element fails tests."""
    t = _empty(*args, **kwargs)
    if t.is_floating_point():
        # no_grad: torch.compile creates leaf tensors that require grad through torch.empty
        # (a first FlexAttention compile inside a test failed on the in-place fill)
        with torch.no_grad():
            t.fill_(float("nan"))
    elif t.dtype in (torch.int32, torch.int64, torch.int16):
        t.fill_(-12345)
    return t


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped on CPU, run on the device)")
    config.addinivalue_line("markers", "slow: longer CPU tests (spawned processes, training)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; runs on the device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_nan_empty(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(torch, "empty", _nan_empty)
    yield
