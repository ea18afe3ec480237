#!/usr/bin/env bash
# device call D (session 11, H200) at edac63b (kv_ready where one block a program): GPU tests (attention, sparse,
# engine, model); A/B of kv_ready in the step (spans, B = 1, 2, 4, 8); the decode suite at 128K
# B = 1, 8 (dense/torch, dense/triton, yoco/triton, clsa/triton); critical-path profile; e2e_probe
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/dec
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/engine tests/model -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
(cd $OUT && tar cf r.tar r)
PYTHONPATH=$PWD timeout 150 python3 runs/s11/c.py $R 2 2>&1 | grep "^prof\|Error" | cut -c1-200
(cd $OUT && tar cf r.tar r)
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 \
  ROWS='dense/torch,dense/triton,yoco/triton,clsa/triton' REP=200 \
  STEM=decode OUT=$R/dec timeout 300 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
(cd $OUT && tar cf r.tar r)
mkdir -p $R/prof; OUT=$R/prof PYTHONPATH=$PWD timeout 80 python3 benchmarks/profile_graph.py 2>&1 | grep "replay span\|Error"
(cd $OUT && tar cf r.tar r)
OUT=$R timeout 110 python3 runs/s11/e2e_probe_b18.py 2>&1 | grep -v Warning | tail -4
cd $OUT && tar cf r.tar r
