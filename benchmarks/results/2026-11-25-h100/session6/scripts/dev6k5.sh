#!/usr/bin/env bash
# device call (session 6): attention GPU tests; decode at 128K B=1,4 side by side with e2e_probe (short-span split plan); the sparse stack micro-benchmark
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
timeout 60 python3 -m pytest -q -x -m gpu tests/ops/test_flex_window.py -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | grep -i "error\|assert\|passed\|failed\|mismatch\|greatest" | head -20 | tee $OUT/r/gpu_tests_flex.txt
timeout 150 python3 -m pytest -q -rfs -m gpu tests/ops tests/model tests/engine -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | grep -i "^E \|passed\|failed" | head -30 | tee $OUT/r/gpu_tests.txt
OUT=$OUT/r timeout 200 python3 runs/e2e_probe.py 2>&1 | grep -v Warning | tail -4
dec() { CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r timeout 170 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - - ; }
ROWS='dense/torch,yoco-dsa/triton,indexcache(G=4)/triton,clsa/triton' STEM=decode_b1_b4 dec
OUT=$OUT/r BATCHES=1,4 timeout 100 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -24
cd $OUT && tar -cf results.tar r && ls $OUT/r
