#!/usr/bin/env bash
# device call F (session 11, H200) at HEAD (ring write fused into the window attention): GPU tests
# (ring attention, cache write, engine, model); A/B fused vs ring_write + attention (spans, B = 1,
# 2, 8); the decode suite for clsa/triton at 128K B = 1, 8
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/dec
PYTHONPATH=$PWD timeout 100 python3 -m pytest -q -rfs -m gpu tests/ops/test_ring_attention.py tests/ops/test_cache_write.py tests/engine tests/model -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
(cd $OUT && tar cf r.tar r)
PYTHONPATH=$PWD timeout 100 python3 runs/s11/f.py $R 2 1,2,8 2>&1 | grep "^prof\|Error" | cut -c1-200
(cd $OUT && tar cf r.tar r)
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 ROWS='clsa/triton' REP=200 \
  STEM=decode OUT=$R/dec timeout 60 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
cd $OUT && tar cf r.tar r
