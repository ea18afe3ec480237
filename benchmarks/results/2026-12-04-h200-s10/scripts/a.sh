#!/usr/bin/env bash
# device call A (session 10, H200) at HEAD: step under gemv stage / attention split variants
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > $R/smi.txt
PYTHONPATH=$PWD timeout 480 python3 runs/s10/a.py $R 2 2>&1 | grep "^step\|^env\|Error\|error" | cut -c1-400
cd $OUT && tar cf r.tar r
