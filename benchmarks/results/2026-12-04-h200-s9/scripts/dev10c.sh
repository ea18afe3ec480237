#!/usr/bin/env bash
# device call C (session 9, H200): GPU tests at HEAD; gemv per-shape and decode-step A/B of HEAD
# (unrolled merges) against runs/base10 (f776a18), alternating; e2e_probe dense/stock at B = 1, 8.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -40 | tee $R/gpu_tests.txt
for t in head base head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base10; fi
  PYTHONPATH=$P timeout 60 python3 runs/gemv_ab.py $t 2>&1 | grep '^gemv\|Error' | tee -a $R/gemv_ab.jsonl | cut -c1-160
done
for t in head base head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base10; fi
  PYTHONPATH=$P timeout 90 python3 runs/step_ab.py $t 2>&1 | grep '^step\|Error' | tee -a $R/step_ab.jsonl | cut -c1-200
done
sed 's/for N, B in \[(32768, 1), (131072, 1), (131072, 4)\]/for N, B in [(131072, 1), (131072, 8)]/' \
  runs/e2e_probe.py > runs/e2e_probe_b18.py
OUT=$R timeout 120 python3 runs/e2e_probe_b18.py 2>&1 | grep -v Warning | tail -4
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
