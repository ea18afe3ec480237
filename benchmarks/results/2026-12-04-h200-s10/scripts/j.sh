#!/usr/bin/env bash
# device call J (session 10, H200) at HEAD: the per-layer sparse baselines (yoco-dsa, indexcache G=4)
# in the decode suite at 128K B = 1, 8; the critical-path profile of the clsa step at B = 1, 8
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/dec $R/prof
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 \
  ROWS='yoco-dsa/triton,indexcache(G=4)/triton' REP=200 \
  STEM=decode_sparse_baselines OUT=$R/dec timeout 170 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
OUT=$R/prof PYTHONPATH=$PWD timeout 80 python3 benchmarks/profile_graph.py 2>&1 | grep "replay span\|Error"
cd $OUT && tar cf r.tar r
