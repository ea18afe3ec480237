"""The interpreter runs kernels as NumPy and accepts code that Triton's GPU compiler rejects (a
jitted helper whose constexpr branches returned tiles of different dtypes did exactly that). This
compiles every top-k, gemv and decode-attention kernel variant for sm_90 with Triton's own
compiler and its bundled ptxas, on CPU: no GPU needed, only the triton package. It runs in a
subprocess because the test session sets TRITON_INTERPRET=1, which swaps every kernel for its
interpreted twin."""

import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")


def _ptxas_available() -> bool:
    try:
        path = triton.knobs.nvidia.ptxas.path
    except Exception:  # a triton without the NVIDIA backend's tool knobs
        return False
    return bool(path) and os.path.exists(path)


def _report(module: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-m", module, "--compile-only"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line[len("compile "):]) for line in run.stdout.splitlines()
            if line.startswith("compile ")]
    failed = [r for r in rows if "error" in r or r.get("ptxas_rc") != 0]
    assert not failed, failed[:2]
    spills = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    assert not spills, spills[:2]
    return rows


needs_ptxas = pytest.mark.skipif(not _ptxas_available(), reason="triton's bundled ptxas is not installed")


@needs_ptxas
def test_every_topk_kernel_compiles_for_sm90_without_spills():
    rows = _report("clsa.ops.indexer_topk.bench")
    kinds = {(r["kernel"], r.get("key_bits"), r.get("dtype")) for r in rows}
    assert {("_score_hist_kernel", 8, "bf16"), ("_score_hist_kernel", 16, "bf16"),
            ("_bin_kernel", None, None), ("_gather_kernel", None, None)} <= kinds


@needs_ptxas
def test_every_gemv_tiling_compiles_for_sm90_without_spills():
    rows = _report("clsa.ops.linear.bench")
    assert {r["shape"] for r in rows if r["default"]} == {"qkv", "q", "o", "gate_up", "down"}


@needs_ptxas
def test_every_decode_attention_variant_compiles_for_sm90_without_spills():
    rows = _report("clsa.ops.attention.bench")
    assert {r["kind"] for r in rows} == {"compact", "ring", "dense", "sparse"}
