#!/usr/bin/env bash
# device call C (session 10, H200): new short-span tiling vs old in the step, B = 1, 2, 4, 8
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 540 python3 runs/s10/c.py $R 3 2>&1 | grep "^prof\|^env\|^fail\|Error" | cut -c1-420
cd $OUT && tar cf r.tar r
