"""Rotary layout, the cache-bytes report, and `clsa info`."""

import subprocess
import sys

import torch

from clsa import CLSAConfig
from clsa.cli import main
from clsa.model.layers import rotary
from clsa.model.memory import cache_report, variant_reports


def test_rotary_is_neox_half_split():
    D, p = 8, 3
    x = torch.zeros(1, 1, 1, D)
    x[..., 0], x[..., D // 2] = 1.0, 2.0  # pair (0, D/2) rotates at frequency theta^0 = 1
    y = rotary(x, torch.tensor([[p]]), theta=10000.0)
    c, s = torch.cos(torch.tensor(float(p))), torch.sin(torch.tensor(float(p)))
    torch.testing.assert_close(y[..., 0].squeeze(), 1.0 * c - 2.0 * s)
    torch.testing.assert_close(y[..., D // 2].squeeze(), 2.0 * c + 1.0 * s)
    assert y[..., 1:D // 2].abs().max() == 0 and y[..., D // 2 + 1:].abs().max() == 0


def test_rotary_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        return (rotary(q, torch.tensor([[pq]]), 500.0) * rotary(k, torch.tensor([[pk]]), 500.0)).sum()
    torch.testing.assert_close(score(7, 3), score(104, 100))


def test_yoco_3b_cache_bytes_match_the_published_arithmetic():
    r = {x.variant: x for x in variant_reports(CLSAConfig.from_name("yoco-3b"))}
    assert r["dense"].per_token == 26 * 2 * 8 * 128 * 2 == 104 * 1024
    assert r["yoco"].per_token == 4 * 1024 and r["yoco"].per_sequence_fixed == 13 * 1024 * 4096
    assert r["clsa"].per_token == 4 * 1024 + 128 * 2
    assert r["yoco-dsa"].indexer_per_token == 13 * 256
    assert r["indexcache"].indexer_per_token == 4 * 256  # G = 4 over 13 layers: 4 indexers


def test_cache_report_matches_allocated_cache():
    for v in ("dense", "clsa", "yoco-dsa"):
        cfg = CLSAConfig.from_name("debug", attention_variant=v)
        from clsa.model import CLSAForCausalLM
        m = CLSAForCausalLM(cfg)
        cache = m.new_cache(1, max_length=100)
        bufs = [t for layer in cache.layers for t in (layer.k, layer.v)]
        bufs = [b.buf if hasattr(b, "buf") else b for b in bufs]
        if cache.shared is not None:
            bufs += [cache.shared.k.buf, cache.shared.v.buf] + [b.buf for b in cache.index_keys.values()]
        allocated = sum(b.numel() * b.element_size() for b in bufs)
        assert allocated == cache_report(cfg, dtype_bytes=4).per_sequence(100)


def test_cli_info_prints_every_variant():
    r = subprocess.run([sys.executable, "-m", "clsa.cli", "info", "--preset", "yoco-3b"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for v in ("dense", "yoco", "yoco-dsa", "indexcache", "clsa"):
        assert f"\n{v} " in out
    assert "104.0 KiB" in out and "4.0 KiB" in out


def test_cli_reports_bad_values_without_a_traceback(capsys):
    assert main(["info", "--preset", "debug", "--refresh-every", "0"]) == 2
    assert "index_refresh_every" in capsys.readouterr().err
