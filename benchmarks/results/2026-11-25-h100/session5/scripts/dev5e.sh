#!/usr/bin/env bash
# device call (session 5): top-k without memset + PDL: GPU tests, ops bench (PDL on / off), decode 128K B=1,4
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
nvidia-smi --query-gpu=name,driver_version --format=csv | tee $OUT/env.txt
mkdir -p $OUT/r/pdl $OUT/r/nopdl
timeout 150 python3 -m pytest -q -rf -m gpu tests/ops/test_indexer_topk.py tests/ops/test_indexer_int8.py tests/ops/test_linear.py tests/model -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | tail -6 | tee $OUT/r/gpu_tests.txt
OUT=$OUT/r/pdl timeout 150 python3 benchmarks/gpu_session.py ops 2>&1 | grep -v Warning | cut -c1-400 | grep -v "^$" | tail -8
CLSA_PDL=0 OUT=$OUT/r/nopdl timeout 100 python3 benchmarks/gpu_session.py ops 2>&1 | grep indexer_topk | cut -c1-300
CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r ROWS=dense/torch,yoco-dsa/triton,clsa/triton STEM=decode_b1_b4 timeout 150 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
cd $OUT && tar -cf results.tar r && ls $OUT
