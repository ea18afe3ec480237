#!/usr/bin/env bash
# device call B (session 10, H200): attention tiles / splits / per-layer gather in the step
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 540 python3 runs/s10/b.py $R 3 2>&1 | grep "^prof\|^env\|^fail\|Error" | cut -c1-420
cd $OUT && tar cf r.tar r
