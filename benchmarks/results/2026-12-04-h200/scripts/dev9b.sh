#!/usr/bin/env bash
# device call B (session 8, H200): top-k A/B of the k_scale-load change (HEAD vs d4de848 in
# runs/prev), PDL-off per-kernel profiles and pass-1 variants, then decode A/B at 128K B = 1, 8:
# clsa and clsa(k8) at HEAD against 9c37ff7 (runs/base). Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
for t in head prev head prev; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/prev; fi
  PYTHONPATH=$P timeout 50 python3 runs/topk_ab.py $t 2>&1 | grep '^ab' | tee -a $R/topk_ab.jsonl | cut -c1-200
done
CLSA_PDL=0 PYTHONPATH=$PWD timeout 90 python3 runs/p1_b1.py 2>&1 | grep '^p1\|Error' | tee $R/p1.jsonl
for t in head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base; fi
  mkdir -p $R/dec_$t
  CLSA_COMMIT=$t PYTHONPATH=$P CONTEXTS=131072 BATCHES=1,8 ROWS='clsa/triton,clsa(k8)/triton' \
    STEM=decode OUT=$R/dec_$t timeout 150 python3 $P/benchmarks/gpu_session.py decode 2>&1 \
    | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
done
cd $OUT && tar cf r.tar r && ls $OUT/r
