#!/usr/bin/env bash
# device call (session 5): TTFT, throughput and memory at the current commit: dense/torch vs clsa/triton
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
ROWS=dense/torch,clsa/triton STEM=modes_dense_clsa OUT=$OUT/r timeout 520 python3 benchmarks/gpu_session.py modes 2>&1 | grep -v Warning | cut -c1-300 | tail -20
ls $OUT/r
