#!/usr/bin/env bash
# device call (session 6): the wide gemv sweep with pipeline depths; decode at 128K B=1,4: default tiling vs the sweep's winners (CLSA_GEMV_TILING), with e2e_probe
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
timeout 240 python3 -m clsa.ops.linear.bench --wide $OUT/r/best_tiling.json > $OUT/r/linear_wide.jsonl 2> $OUT/r/linear_wide_err.txt; tail -2 $OUT/r/linear_wide_err.txt
python3 - <<'P'
import json, os
for l in open(os.environ['OUT'] + '/r/linear_wide.jsonl'):
    r = json.loads(l)
    if 'best' in r: print('BEST', json.dumps(r['best'])); continue
    us = r['us'] if isinstance(r['us'], str) else '%.1f' % r['us']
    print(r['shape'], r['M'], r['BN'], r['BK'], r['num_warps'], r['SPLIT'], r['num_stages'], us)
P
OUT=$OUT/r timeout 200 python3 runs/e2e_probe.py 2>&1 | grep -v Warning | tail -3
dec() { CONTEXTS=131072 BATCHES=1,4 OUT=$OUT/r timeout 120 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - - ; }
ROWS=clsa/triton STEM=decode_default dec
echo "--- CLSA_GEMV_TILING"; CLSA_GEMV_TILING=$OUT/r/best_tiling.json ROWS=clsa/triton STEM=decode_tiling dec
cd $OUT && tar -cf results.tar r && ls $OUT/r
