#!/usr/bin/env bash
# device call C (session 11, H200), working tree = HEAD + kv_ready: GPU tests (attention, sparse,
# engine, model); A/B of kv_ready in the step (spans, B = 1, 2, 4, 8); the decode suite at 128K
# B = 1, 8 for dense/triton (the best dense row in s10), yoco/triton, clsa/triton
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/dec
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/engine tests/model -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 150 python3 runs/s11/c.py $R 2 2>&1 | grep "^prof\|Error" | cut -c1-200
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 \
  ROWS='dense/triton,yoco/triton,clsa/triton' REP=200 \
  STEM=decode OUT=$R/dec timeout 240 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
cd $OUT && tar cf r.tar r
