#!/usr/bin/env bash
# device call E (session 9, H200) at HEAD: critical-path profile of the graph-replayed decode step,
# clsa/triton at 128K, B = 1 and 8.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
OUT=$R PYTHONPATH=$PWD timeout 240 python3 benchmarks/profile_graph.py 2>&1 | grep -v Warning | tail -45
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head
