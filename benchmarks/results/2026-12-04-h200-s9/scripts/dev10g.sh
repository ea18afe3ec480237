#!/usr/bin/env bash
# device call G (session 9, H200): GPU tests (attention, sparse, engine, linear) at HEAD; graph
# critical-path profiles at 128K B = 1, 8 of HEAD (vectorized k_pos scan) vs runs/base11 (08c31b3).
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/head $R/base
PYTHONPATH=$PWD timeout 100 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/engine tests/ops/test_linear.py -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
for t in head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base11; fi
  OUT=$R/$t PYTHONPATH=$P timeout 90 python3 $PWD/benchmarks/profile_graph.py 2>&1 | grep "replay span\|_attn\|Error"
done
cd $OUT && tar cf r.tar r
