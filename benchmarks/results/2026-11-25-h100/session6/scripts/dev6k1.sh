#!/usr/bin/env bash
# device call (session 6): every GPU test (PDL on every decode kernel); the wide gemv tiling sweep
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv | tee $OUT/r/env.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/env.txt
timeout 270 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 | grep -v "^DEBUG\|^$" | tail -15 | tee $OUT/r/gpu_tests.txt
timeout 280 python3 -m clsa.ops.linear.bench --wide $OUT/r/best_tiling.json > $OUT/r/linear_wide.jsonl 2> $OUT/r/linear_wide_err.txt; tail -3 $OUT/r/linear_wide_err.txt
python3 - <<'P'
import json, os
for l in open(os.environ['OUT'] + '/r/linear_wide.jsonl'):
    r = json.loads(l)
    if 'best' in r: print('BEST', json.dumps(r['best'])); continue
    us = r['us'] if isinstance(r['us'], str) else '%.1f us %.2f TB/s' % (r['us'], r['TBps'])
    print(r['shape'], r['M'], r['BN'], r['BK'], r['num_warps'], r['SPLIT'], us)
P
cd $OUT && tar -cf results.tar r && ls $OUT
