"""Skinny decode projections with fused prologues equal their references (CPU interpreter, fp32;
bf16 and a CUDA-graph replay on the GPU)."""

import pytest
import torch

from clsa import ops
from clsa.ops.attention import triton_decode as td
from clsa.ops.linear import naive, stock, triton_gemv
from clsa.ops.linear.triton_gemv import PRO_NONE, PRO_NORM, PRO_SILU, gemv
from clsa.testing import assert_close

# (M rows, N, K): one row, the MMA tile's 16 rows, sizes that are no multiple of any tile
SHAPES = [(1, 16, 32), (3, 70, 200), (16, 33, 129), (5, 130, 64)]
TILINGS = [dict(BN=16, BK=32, SPLIT=1), dict(BN=32, BK=32, SPLIT=3), dict(BN=16, BK=64, SPLIT=4)]


def _counters_clean(device="cpu"):
    return not td.split_counters(1, torch.device(device)).any()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tiling", TILINGS)
def test_linear_matches_reference(shape, tiling):
    M, N, K = shape
    x, w = torch.randn(M, K), torch.randn(N, K)
    out, summed = gemv(x, w, PRO_NONE, **tiling)
    assert summed is None
    assert_close(out, naive.linear(x, w))
    assert _counters_clean()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("with_residual", [False, True])
def test_norm_linear_matches_reference(shape, tiling, with_residual):
    M, N, K = shape
    x, w, nw = torch.randn(M, K) * 3, torch.randn(N, K), torch.randn(K)
    r = torch.randn(M, K) if with_residual else None
    out, summed = gemv(x, w, PRO_NORM, nw, 1e-5, r, **tiling)
    ref, ref_sum = naive.norm_linear(x, nw, 1e-5, w, r)
    assert_close(out, ref)
    if with_residual:
        assert_close(summed, ref_sum)
    assert _counters_clean()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tiling", TILINGS)
def test_silu_mul_linear_matches_reference(shape, tiling):
    M, N, K = shape
    gu, w = torch.randn(M, 2 * K), torch.randn(N, K)
    out, _ = gemv(gu, w, PRO_SILU, **tiling)
    assert_close(out, naive.silu_mul_linear(gu, w))


def test_split_launches_back_to_back_reuse_clean_counters():
    """Counters are reset by the last program of every tile: a second launch with other data
    (and more tiles than the first) is right too."""
    x1, w1 = torch.randn(2, 96), torch.randn(40, 96)
    x2, w2 = torch.randn(2, 96), torch.randn(90, 96)
    assert_close(gemv(x1, w1, BN=16, BK=32, SPLIT=3)[0], naive.linear(x1, w1))
    assert_close(gemv(x2, w2, BN=16, BK=32, SPLIT=2)[0], naive.linear(x2, w2))
    assert_close(gemv(x1, w1, BN=16, BK=32, SPLIT=3)[0], naive.linear(x1, w1))
    assert _counters_clean()


def test_public_functions_keep_leading_dims_and_fall_back():
    w, nw = torch.randn(24, 40), torch.randn(40)
    x = torch.randn(2, 1, 40)
    r = torch.randn(2, 1, 40)
    assert_close(triton_gemv.linear(x, w), naive.linear(x, w))
    out, summed = triton_gemv.norm_linear(x, nw, 1e-5, w, r)
    ref, ref_sum = naive.norm_linear(x, nw, 1e-5, w, r)
    assert out.shape == (2, 1, 24) and summed.shape == (2, 1, 40)
    assert_close(out, ref)
    assert_close(summed, ref_sum)
    gu = torch.randn(2, 1, 80)
    assert_close(triton_gemv.silu_mul_linear(gu, w), naive.silu_mul_linear(gu, w))
    # prefill-sized (more rows than one tile) and autograd go to the unfused pair
    xl = torch.randn(3, 7, 40, requires_grad=True)
    out, summed = triton_gemv.norm_linear(xl, nw, 1e-5, w)
    out.sum().backward()
    assert xl.grad is not None and summed is xl
    assert_close(out.detach(), naive.norm_linear(xl.detach(), nw, 1e-5, w)[0])


def test_backends_agree():
    w, nw, x, r = torch.randn(24, 40), torch.randn(40), torch.randn(2, 1, 40), torch.randn(2, 1, 40)
    want = naive.norm_linear(x, nw, 1e-5, w, r)
    for backend in ("torch", "triton"):
        with ops.use_backend(backend):
            got = ops.norm_linear(x, nw, 1e-5, w, r)
        assert_close(got[0], want[0])
        assert_close(got[1], want[1])
    gu = torch.randn(1, 80)
    assert_close(stock.silu_mul_linear(gu, w), naive.silu_mul_linear(gu, w))


def test_bad_input_is_refused_with_the_reason():
    w = torch.randn(24, 40)
    with pytest.raises(ValueError, match="does not match weight"):
        gemv(torch.randn(2, 41), w)
    with pytest.raises(ValueError, match="rows >"):
        gemv(torch.randn(17, 40), w)
    with pytest.raises(ValueError, match="dtype"):
        gemv(torch.randn(2, 40, dtype=torch.float16), w)


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 4, 8])
@pytest.mark.parametrize("NK", [(3072, 3072), (5120, 3072), (16384, 3072), (3072, 8192), (2048, 3072)])
def test_bf16_decode_shapes_on_gpu(M, NK):
    N, K = NK
    dev, bf = "cuda", torch.bfloat16
    x, r = torch.randn(M, K, device=dev, dtype=bf), torch.randn(M, K, device=dev, dtype=bf)
    w, nw = torch.randn(N, K, device=dev, dtype=bf) / K ** 0.5, torch.rand(K, device=dev, dtype=bf) + 0.5
    assert_close(triton_gemv.linear(x, w), naive.linear(x.float(), w.float()),
                 low_precision=naive.linear(x, w))
    out, summed = triton_gemv.norm_linear(x, nw, 1e-5, w, r)
    assert_close(out, naive.norm_linear(x.float(), nw.float(), 1e-5, w.float(), r.float())[0],
                 low_precision=naive.norm_linear(x, nw, 1e-5, w, r)[0])
    assert torch.equal(summed, x + r)
    gu = torch.randn(M, 2 * K, device=dev, dtype=bf)
    w2 = torch.randn(N, K, device=dev, dtype=bf) / K ** 0.5
    assert_close(triton_gemv.silu_mul_linear(gu, w2), naive.silu_mul_linear(gu.float(), w2.float()),
                 low_precision=naive.silu_mul_linear(gu, w2))
    assert _counters_clean(dev)


@pytest.mark.gpu
def test_split_gemv_replays_in_a_cuda_graph():
    dev, bf = "cuda", torch.bfloat16
    x, w = torch.randn(4, 8192, device=dev, dtype=bf), torch.randn(3072, 8192, device=dev, dtype=bf)
    assert triton_gemv.gemv_config(4, 3072, 8192, x.device)["SPLIT"] > 1
    triton_gemv.linear(x, w)  # compile outside the capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = triton_gemv.linear(x, w)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        g.replay()
        torch.cuda.synchronize()
        assert_close(out, naive.linear(x.float(), w.float()), low_precision=naive.linear(x, w))
    assert _counters_clean(dev)


def test_tiling_override_file(tmp_path, monkeypatch):
    # CLSA_GEMV_TILING replaces gemv_config's choice for the shapes it names, and the launch uses it
    cfg = dict(BN=16, BK=32, SPLIT=3, num_warps=4, num_stages=1)
    path = tmp_path / "tiling.json"
    path.write_text('{"70,200": %s}' % str(cfg).replace("'", '"'))
    monkeypatch.setenv("CLSA_GEMV_TILING", str(path))
    monkeypatch.setattr(triton_gemv, "_OVERRIDES", triton_gemv._tiling_overrides())
    assert triton_gemv.gemv_config(3, 70, 200, torch.device("cpu")) == cfg
    assert triton_gemv.gemv_config(3, 71, 200, torch.device("cpu")) != cfg  # other shapes: rules
    x, w = torch.randn(3, 200), torch.randn(70, 200)
    assert_close(triton_gemv.linear(x, w), naive.linear(x, w))
    assert _counters_clean()


def test_tiling_override_refuses_incomplete_entries(tmp_path, monkeypatch):
    path = tmp_path / "tiling.json"
    path.write_text('{"70,200": {"BN": 16, "BK": 32}}')
    monkeypatch.setenv("CLSA_GEMV_TILING", str(path))
    with pytest.raises(ValueError, match="must give exactly"):
        triton_gemv._tiling_overrides()
