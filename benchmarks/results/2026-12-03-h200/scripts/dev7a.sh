#!/usr/bin/env bash
# device call (session 7, H200): GPU tests at the rotary-fusion commit; decode at 128K B=1,4,8 for
# clsa / yoco-dsa / indexcache G=4 (Triton); e2e_probe's stock dense and stock clsa at the same
# batches, in the same call. Carry runs/ (runs/e2e_probe.py = ../shared/tools/e2e_probe.py).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $OUT/r/env.txt
timeout 170 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED" | head -30 | tee $OUT/r/gpu_tests.txt
CONTEXTS=131072 BATCHES=1,4,8 ROWS='clsa/triton,yoco-dsa/triton,indexcache(G=4)/triton' \
  STEM=decode_b148 OUT=$OUT/r timeout 230 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
# the probe at the batches of this table (its own list is 32K B=1, 128K B=1 and B=4)
sed 's/for N, B in \[(32768, 1), (131072, 1), (131072, 4)\]/for N, B in [(131072, 1), (131072, 4), (131072, 8)]/' \
  runs/e2e_probe.py > runs/e2e_probe_b148.py
OUT=$OUT/r timeout 190 python3 runs/e2e_probe_b148.py 2>&1 | grep -v Warning | tail -4
ls $OUT/r
