#!/usr/bin/env bash
# device call F (session 9, H200) at HEAD: critical-path profiles under QKV / down tiling overrides.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
PYTHONPATH=$PWD timeout 400 python3 runs/prof_var.py $R 1 2>&1 | grep "^prof\|Error\|error" | cut -c1-330
cd $OUT && tar cf r.tar r
