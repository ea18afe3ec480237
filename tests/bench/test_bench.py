"""`clsa bench`: the quick CPU run writes complete results; the byte-floor arithmetic and units."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clsa.bench.decode import build_model
from clsa.bench.floor import cache_bytes_read, weight_bytes
from clsa.bench.suite import add_ratios
from clsa.config import CLSAConfig
from clsa.model.memory import cache_report

KIB = 1024


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "clsa.cli", "bench", "all", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _one(out: Path, prefix: str) -> dict:
    files = sorted(out.glob(f"{prefix}-debug-*.json"))
    assert len(files) == 1, files
    for ext in (".md", ".png"):
        assert files[0].with_suffix(ext).stat().st_size > 0
    return json.loads(files[0].read_text())


def test_quick_decode_json_has_every_field(quick):
    res = _one(quick, "decode")
    assert res["mode"] == "quick" and res["preset"] == "debug"
    for key in ("date", "torch", "python", "commit", "device", "triton"):
        assert key in res["env"], key
    assert all(c["ok"] for c in res["checks"].values()), res["checks"]
    variants = {r["variant"] for r in res["rows"]}
    assert variants == {"dense", "yoco", "yoco-dsa", "indexcache", "clsa"}
    assert {(r["B"], r["N"]) for r in res["rows"]} == {(1, 32), (1, 64), (2, 32), (2, 64)}
    for r in res["rows"]:
        for key in ("row", "backend", "step_ms", "tokens_per_s", "bytes", "achieved_TBps",
                    "speedup_vs_dense_best", "speedup_vs_yoco_dsa_best"):
            assert r[key] is not None, (key, r)
        # units: ms, tokens/s, bytes, TB/s agree with each other
        assert math.isclose(r["tokens_per_s"], r["B"] / (r["step_ms"] / 1e3), rel_tol=1e-9)
        assert math.isclose(r["achieved_TBps"], r["bytes"] / (r["step_ms"] / 1e3) / 1e12, rel_tol=1e-9)


def test_quick_modes_json_has_every_field(quick):
    res = _one(quick, "modes")
    rows = {r["row"] for r in res["throughput"]}
    assert len(rows) == 5 and rows == {r["row"] for r in res["prefill"]}
    for t in res["throughput"]:
        assert t["B"] >= 1 and t["step_ms"] > 0 and "ratio_vs_dense_stock" in t
    for p in res["prefill"]:
        assert p["ttft_ms"] > 0 and p["ratio_vs_dense_stock"] > 0
    for m in res["memory"]:  # the allocator-level figure equals the formula
        assert m["measured_bytes"] == m["computed_bytes"] > 0


def test_cache_bytes_per_token_of_the_yoco3b_shape():
    # the figures: dense 104 KiB per token (13.9 GB at 128K), yoco one shared 4 KiB K/V
    c = {v: CLSAConfig.from_name("yoco-3b", attention_variant=v) for v in ("dense", "yoco", "clsa")}
    assert cache_report(c["dense"]).per_token == 104 * KIB
    assert cache_report(c["dense"]).per_sequence(131072) == 13_958_643_712
    assert cache_report(c["yoco"]).per_token == 4 * KIB
    assert cache_report(c["clsa"]).per_token == 4 * KIB + 128 * 2  # + one indexer key
    assert cache_report(c["yoco"]).per_sequence_fixed == 13 * 1024 * 4 * KIB  # 13 ring buffers


@pytest.mark.parametrize("variant,G", [("dense", 1), ("yoco", 1), ("yoco-dsa", 1), ("indexcache", 4),
                                       ("clsa", 1)])
def test_floor_bytes_by_hand(variant, G):
    c = CLSAConfig.from_name("yoco-3b", attention_variant=variant, index_refresh_every=G)
    B, N, row = 4, 131072, 2 * 8 * 128 * 2
    ring = 13 * B * 1024 * row
    calls = {"yoco-dsa": 13, "indexcache": 4, "clsa": 1}.get(variant, 0)  # indexer calls per step
    want = {"dense": 26 * B * N * row, "yoco": ring + 13 * B * N * row}.get(
        variant, ring + calls * (B * N * 128 * 2 + B * 2048 * row))
    assert cache_bytes_read(c, B, N) == want
    # short contexts: the ring covers the context, top-k covers all of it
    layers = 26 if variant in ("dense", "yoco") else 13  # yoco: 13 rings + 13 dense cross reads
    assert cache_bytes_read(c, 1, 100) == layers * 100 * row + calls * (100 * 128 * 2 + 100 * row)


@pytest.mark.parametrize("variant,calls", [("clsa", 1), ("yoco-dsa", 13)])
def test_floor_bytes_of_int8_index_keys(variant, calls):
    # 8-bit keys: one byte per entry plus one fp32 scale per slot, instead of 2 bytes per entry
    c16 = CLSAConfig.from_name("yoco-3b", attention_variant=variant)
    c8 = CLSAConfig.from_name("yoco-3b", attention_variant=variant, indexer_key_bits=8)
    B, N = 4, 131072
    assert cache_bytes_read(c16, B, N) - cache_bytes_read(c8, B, N) == calls * B * N * (256 - 132)


def test_fill_cache_and_cpu_step_with_int8_index_keys():
    from clsa.bench.decode import decode_step_fn
    from clsa.bench.suite import ROWS, config_for

    row = next(r for r in ROWS if r.name == "clsa(k8)/triton")
    model = build_model(config_for("debug", row), "cpu", torch.float32)
    step, dec = decode_step_fn(model, 2, 40)
    keys = dec.cache.index_keys[0]
    assert keys.k.buf.dtype == torch.int8 and (keys.scale.buf > 0).all()
    assert step().shape == (2, model.config.vocab_size)


def test_weight_bytes_count_the_embedding_rows_read():
    cfg = CLSAConfig.from_name("debug", tie_word_embeddings=False)
    model = build_model(cfg, "cpu", torch.float32)
    params = sum(p.numel() for p in model.parameters())
    emb = cfg.vocab_size * cfg.hidden_size
    assert weight_bytes(model, 3) == 4 * (params - emb + 3 * cfg.hidden_size)
    tied = build_model(CLSAConfig.from_name("debug", tie_word_embeddings=True), "cpu", torch.float32)
    assert weight_bytes(tied, 3) == 4 * sum(p.numel() for p in tied.parameters())


def test_speedups_are_against_the_fastest_baseline():
    rows = [dict(row="dense/torch", variant="dense", B=1, N=8, step_ms=10.0),
            dict(row="dense/triton", variant="dense", B=1, N=8, step_ms=8.0),
            dict(row="yoco-dsa/triton", variant="yoco-dsa", B=1, N=8, step_ms=4.0),
            dict(row="clsa/triton", variant="clsa", B=1, N=8, step_ms=2.0),
            dict(row="clsa/triton", variant="clsa", B=4, N=8, step_ms=3.0)]  # no baseline at B=4
    add_ratios(rows)
    assert rows[3]["speedup_vs_dense_best"] == 4.0 and rows[3]["speedup_vs_yoco_dsa_best"] == 2.0
    assert rows[0]["speedup_vs_dense_best"] == 0.8
    assert rows[4]["speedup_vs_dense_best"] is None and rows[4]["speedup_vs_yoco_dsa_best"] is None
