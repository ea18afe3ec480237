#!/usr/bin/env bash
# device call I (session 10, H200) at HEAD: GPU tests (attention, sparse, engine); the dense decode
# kernel at 128K (B = 1, 4, 8) against SDPA; the decode suite at 128K B = 1, 8 for dense/torch,
# dense/triton, yoco/triton, clsa/triton
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/dec
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 100 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 100 python3 -c '
import json, torch
from clsa.ops.attention.bench import bench_decode_attention
for B in (1, 4, 8):
    r = bench_decode_attention(B, 131072, 24, 8, 128, torch.bfloat16)
    r["B"] = B
    print("dense_attn", json.dumps(r), flush=True)
' 2>&1 | grep "^dense_attn\|Error" | tee $R/dense_attn.jsonl
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 \
  ROWS='dense/torch,dense/triton,yoco/triton,clsa/triton' REP=200 \
  STEM=decode OUT=$R/dec timeout 330 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
cd $OUT && tar cf r.tar r
