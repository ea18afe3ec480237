#!/usr/bin/env bash
# device call A (session 8, H200): GPU tests at HEAD; top-k A/B HEAD/base/HEAD/base (bf16 and int8
# keys, B = 1 and 8, 128K); an int8-key tiling sweep at HEAD. Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 200 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -40 | tee $R/gpu_tests.txt
for t in head base head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base; fi
  X=""; [ ! -e $R/ab_stock ] && X="--stock" && touch $R/ab_stock
  [ $t = head ] && [ ! -e $R/ab_prof ] && X="$X --profile" && touch $R/ab_prof
  PYTHONPATH=$P timeout 60 python3 runs/topk_ab.py $t $X 2>&1 | grep '^ab' | tee -a $R/topk_ab.jsonl | cut -c1-400
done
PYTHONPATH=$PWD timeout 120 python3 runs/topk_sweep8.py 2>&1 | grep '^sweep8\|Error' | tee $R/sweep8.jsonl
cd $OUT && tar cf r.tar r && ls -la $OUT
