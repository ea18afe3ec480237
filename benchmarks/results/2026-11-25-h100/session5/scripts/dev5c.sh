#!/usr/bin/env bash
# device call (session 5): linear GPU tests; linear bench (PDL A/B) + sweep; decode A/B (PDL, attention split floor)
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
nvidia-smi --query-gpu=name,driver_version --format=csv | tee $OUT/env.txt
mkdir -p $OUT/r
timeout 100 python3 -m pytest -q -rf -m gpu tests/ops/test_linear.py tests/ops/test_attention_decode.py -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | tail -8 | tee $OUT/r/gpu_tests_ops.txt
dec() { CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r timeout 150 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - - ; }
ROWS=dense/torch,yoco-dsa/triton,clsa/torch,clsa/triton STEM=decode_b1_b4 dec
echo "--- CLSA_PDL=0"; CLSA_PDL=0 ROWS=clsa/triton STEM=decode_nopdl dec
echo "--- CLSA_ATTN_MIN_BLOCKS=1"; CLSA_ATTN_MIN_BLOCKS=1 ROWS=clsa/triton STEM=decode_minblocks1 dec
OUT=$OUT/r BATCHES=1,4 timeout 100 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -22
timeout ${SWEEP_S:-150} python3 -m clsa.ops.linear.bench ${SWEEP} > $OUT/r/linear_bench.jsonl 2> $OUT/r/linear_err.txt; tail -3 $OUT/r/linear_err.txt
python3 - <<'P'
import json,os
for l in open(os.environ['OUT']+'/r/linear_bench.jsonl'):
    r=json.loads(l); print(r['shape'],r['M'],'cublas %.1f gemv %.1f (nopdl %.1f) | norm: stock %.1f fused %.1f (nopdl %.1f) | silu: stock %.1f fused %.1f (nopdl %.1f)'%(r['cublas_us'],r['gemv_us'],r['gemv_nopdl_us'],r['stock_norm_linear_us'],r['norm_linear_us'],r['norm_linear_nopdl_us'],r['stock_silu_linear_us'],r['silu_linear_us'],r['silu_linear_nopdl_us']))
    for b in r.get('best',[])[:3]: print('    ',b)
P
cd $OUT && tar -cf results.tar r && ls $OUT
