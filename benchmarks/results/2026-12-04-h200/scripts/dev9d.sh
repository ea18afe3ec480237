#!/usr/bin/env bash
# device call D (session 8, H200): GPU tests at HEAD; top-k A/B HEAD / e40567a (runs/prev) /
# 9c37ff7 (runs/base), twice; PDL-off per-kernel profile; pass-2/3 tilings. Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -40 | tee $R/gpu_tests.txt
for t in head prev base head prev base; do
  case $t in head) P=$PWD;; prev) P=$PWD/runs/prev;; base) P=$PWD/runs/base;; esac
  PYTHONPATH=$P timeout 50 python3 runs/topk_ab.py $t 2>&1 | grep '^ab' >> $R/topk_ab.jsonl
done
python3 -c "
import json
for l in open('$R/topk_ab.jsonl'):
    r = json.loads(l[3:]); print(r['tree'], r['B'], r['key_bits'], round(r.get('triton_graph_us', -1), 2))"
CLSA_PDL=0 PYTHONPATH=$PWD timeout 40 python3 runs/prof_d.py 2>&1 | grep '^prof\|Error' | tee $R/prof.jsonl
PYTHONPATH=$PWD timeout 100 python3 runs/sweep_d.py 2>&1 | grep '^sweepd\|Error' | tee $R/sweepd.jsonl
cd $OUT && tar cf r.tar r
