#!/usr/bin/env bash
# device call (session 5, final): every GPU test; decode 128K B=1,4 all rows + profile; linear bench; TTFT 128K
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
nvidia-smi --query-gpu=name,driver_version --format=csv | tee $OUT/env.txt
mkdir -p $OUT/r
timeout 230 python3 -m pytest -q -rf -m gpu tests -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | tail -12 | tee $OUT/r/gpu_tests.txt
CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r ROWS=dense/torch,yoco/triton,yoco-dsa/triton,indexcache\(G=4\)/triton,clsa/torch,clsa/triton STEM=decode_b1_b4 timeout 200 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
OUT=$OUT/r BATCHES=1,4 timeout 80 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -22
timeout 60 python3 -m clsa.ops.linear.bench > $OUT/r/linear_bench.jsonl 2> $OUT/r/linear_err.txt; tail -2 $OUT/r/linear_err.txt
cd $OUT && tar -cf results.tar r && ls $OUT
