#!/usr/bin/env bash
# device call H (session 10, H200): dense decode kernel split counts at 128K (B = 1, 4, 8), and the
# yoco/triton and dense/triton decode steps under the old and the new long-span plan
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 420 python3 runs/s10/h.py $R 2>&1 | grep "^rec\|Error\|error" | cut -c1-300
cd $OUT && tar cf r.tar r
