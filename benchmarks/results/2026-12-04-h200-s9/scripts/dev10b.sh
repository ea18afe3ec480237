#!/usr/bin/env bash
# device call B (session 9, H200): NARROW gemv tilings vs the rule (isolated), then the decode
# step with the winners (all shapes; Q/O/QKV only) vs the rule, alternating. Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 500 python3 runs/narrow.py $R 2>&1 | grep "^step\|^best\|Error\|error\|^{" | tee $R/log.txt | cut -c1-220
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
