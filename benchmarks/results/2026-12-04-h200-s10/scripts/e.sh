#!/usr/bin/env bash
# device call E (session 10, H200): GPU tests (sparse, model, engine); then the step's
# critical path, new tiling, gather once / per layer (one-load index scan), B = 1, 2, 4, 8
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 200 python3 -m pytest -q -rfs -m gpu tests/ops/test_sparse_attention.py tests/model tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 360 python3 runs/s10/e.py $R 3 2>&1 | grep "^prof\|^env\|^fail\|Error" | cut -c1-300
cd $OUT && tar cf r.tar r
