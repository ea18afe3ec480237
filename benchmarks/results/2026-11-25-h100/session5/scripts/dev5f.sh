#!/usr/bin/env bash
# device call (session 5): e2e_probe (stock anchors) side by side with our dense and clsa rows at 128K B=1,4
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
OUT=$OUT/r timeout 240 python3 runs/e2e_probe.py 2>&1 | grep -v Warning | tail -8
CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r ROWS=dense/torch,dense/triton,clsa/triton STEM=decode_vs_probe timeout 200 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
ls $OUT/r
