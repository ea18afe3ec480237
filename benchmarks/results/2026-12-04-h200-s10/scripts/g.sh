#!/usr/bin/env bash
# device call G (session 10, H200): critical-path replay spans of the decode step at 128K,
# B = 1, 2, 4, 8, HEAD against runs/base12 (4c30b84), alternating, two rounds. Carry runs/s10, runs/base12.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
for rnd in 0 1; do for t in head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base12; fi
  PYTHONPATH=$P TREE=$t timeout 120 python3 runs/s10/g.py $R 2>&1 | grep "^prof\|Error" | cut -c1-200
done; done
cd $OUT && tar cf r.tar r
