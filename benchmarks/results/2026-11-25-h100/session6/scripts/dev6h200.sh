#!/usr/bin/env bash
# device call (session 6, H200): decode at 128K, batch 8: e2e_probe's dense (B=8 copy) and ours, dense vs yoco-dsa vs clsa
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/r/env.txt
python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)' | tee -a $OUT/r/env.txt
OUT=$OUT/r timeout 200 python3 runs/e2e_probe_b8.py 2>&1 | grep -v Warning | tail -4
CONTEXTS=131072 BATCHES=8 ROWS=dense/torch,yoco-dsa/triton,clsa/triton STEM=decode_h200_b8 OUT=$OUT/r timeout 330 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
cd $OUT && tar -cf results.tar r && ls $OUT/r
