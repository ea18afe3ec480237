#!/usr/bin/env bash
# device call B (session 11, H200): GPU top-k tests; top-k A/B (4c30b84 tree vs working tree:
# scale prefetch) and pass-3 tilings at B = 8; per-layer sparse tiles in the step (s10 call L)
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
timeout 200 python3 -m pytest -q -m gpu tests/ops/test_indexer_topk.py tests/ops/test_indexer_int8.py 2>&1 | tail -3 | tee $R/tests.txt
C='[{}, {"block": 2048, "warps_gather": 8}, {"block": 2048, "warps_gather": 4}, {"block": 1024, "warps_gather": 8}, {"block": 512, "warps_gather": 4}]'
for rnd in 1 2; do
  for v in base:runs/base12 new:$PWD; do
    PYTHONPATH=${v#*:} timeout 100 python3 runs/s11/b_topk.py $R ${v%%:*} 1 2>&1 | grep "^topk\|Error" | cut -c1-300
  done
done
CLSA_PDL=0 PYTHONPATH=$PWD timeout 100 python3 runs/s11/b_topk.py $R new 0 "$C" 2>&1 | grep "^topk\|Error" | cut -c1-300
CLSA_PDL=0 PYTHONPATH=runs/base12 timeout 60 python3 runs/s11/b_topk.py $R base 0 2>&1 | grep "^topk\|Error" | cut -c1-300
PYTHONPATH=$PWD timeout 100 python3 runs/s11/b_topk.py $R new 1 "$C" 2>&1 | grep "^topk\|Error" | cut -c1-300
PYTHONPATH=$PWD timeout 170 python3 runs/s11/l.py $R 1 2>&1 | grep "^prof\|Error" | cut -c1-200
cd $OUT && tar cf r.tar r
