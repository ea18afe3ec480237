#!/usr/bin/env bash
# device call D (session 10, H200): GPU tests (attention, sparse, model, engine); then the step's
# critical path under old / new short-span tiling and gather once / per layer, B = 1, 2, 4, 8
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 200 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/model tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 360 python3 runs/s10/d.py $R 3 2>&1 | grep "^prof\|^env\|^fail\|Error" | cut -c1-300
cd $OUT && tar cf r.tar r
