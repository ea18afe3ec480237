#!/usr/bin/env bash
# device call A (session 9, H200): GPU tests at HEAD (L2 prefetch on, 16 MB default); decode-step
# A/B of CLSA_L2_PREFETCH_MB in {0, 8, 16, 32} and CLSA_GEMV_EVICT_FIRST at 128K, B = 1 and 8.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; git log -1 --format=%h 2>/dev/null; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 110 python3 -m pytest -q -rfs -m gpu tests/ops/test_l2_prefetch.py tests/ops/test_linear.py tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -40 | tee $R/gpu_tests.txt
PYTHONPATH=$PWD timeout 300 python3 runs/pf_ab.py 2 2>&1 | grep "^pf\|Error\|error" | tee $R/pf_ab.jsonl | cut -c1-200
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
