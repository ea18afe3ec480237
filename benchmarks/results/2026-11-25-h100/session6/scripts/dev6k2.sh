#!/usr/bin/env bash
# device call (session 6): decode at 128K B=1,4 side by side with e2e_probe; A/B: CLSA_PDL=0, the sweep's tiling
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
OUT=$OUT/r timeout 200 python3 runs/e2e_probe.py 2>&1 | grep -v Warning | tail -8
dec() { CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r timeout 170 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - - ; }
ROWS=dense/torch,yoco-dsa/triton,clsa/triton STEM=decode_b1_b4 dec
echo "--- CLSA_PDL=0"; CLSA_PDL=0 ROWS=clsa/triton STEM=decode_nopdl dec
if [ -n "${TILING:-}" ]; then echo "--- CLSA_GEMV_TILING=$TILING"; cat $TILING; CLSA_GEMV_TILING=$TILING ROWS=clsa/triton STEM=decode_tiling dec; fi
OUT=$OUT/r BATCHES=1,4 timeout 100 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -24
cd $OUT && tar -cf results.tar r && ls $OUT
