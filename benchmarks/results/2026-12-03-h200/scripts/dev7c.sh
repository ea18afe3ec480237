#!/usr/bin/env bash
# device call (session 7, H200): the wide gemv tiling sweep at M = 1 and 8 on the H200, then decode
# at 128K B=1,4,8: the H100-derived tiling rule vs the sweep's winners (CLSA_GEMV_TILING), A/B/A/B
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
timeout 300 python3 -m clsa.ops.linear.bench --wide $OUT/r/best_tiling.json --batches 1,8 \
  > $OUT/r/linear_wide.jsonl 2> $OUT/r/linear_wide_err.txt; tail -2 $OUT/r/linear_wide_err.txt
python3 - <<'P'
import json, os
for l in open(os.environ['OUT'] + '/r/linear_wide.jsonl'):
    r = json.loads(l)
    if 'best' in r: print('BEST', json.dumps(r['best'])); continue
    us = r['us'] if isinstance(r['us'], str) else '%.1f' % r['us']
    print(r['shape'], r['M'], r['BN'], r['BK'], r['num_warps'], r['SPLIT'], r['num_stages'], us)
P
dec() { CONTEXTS=131072 BATCHES=1,4,8 ROWS=clsa/triton OUT=$OUT/r timeout 70 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"B": [0-9]*\|"step_ms": [0-9.]*' | paste - - | sed "s/^/$STEM /"; }
[ -s $OUT/r/best_tiling.json ] || exit 1
for i in 1 2; do
  STEM=rule$i dec
  CLSA_GEMV_TILING=$OUT/r/best_tiling.json STEM=sweep$i dec
done
ls $OUT/r; cd $OUT && tar -cf results.tar r && rm -rf r
