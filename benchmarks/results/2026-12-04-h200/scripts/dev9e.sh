#!/usr/bin/env bash
# device call E (session 8, H200), final: GPU tests at HEAD; top-k A/B HEAD/base/HEAD/base
# (base = 9c37ff7 in runs/base); PDL-off per-kernel profile; decode at 128K B = 1, 8 for
# clsa and clsa(k8) at HEAD; e2e_probe's dense and stock-clsa at the same batches. Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 150 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -40 | tee $R/gpu_tests.txt
for t in head base head base; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base; fi
  X=""; [ ! -e $R/.stock ] && X="--stock" && touch $R/.stock
  [ $t = head ] && [ ! -e $R/.prof ] && X="$X --profile" && touch $R/.prof
  PYTHONPATH=$P timeout 60 python3 runs/topk_ab.py $t $X 2>&1 | grep '^ab' | tee -a $R/topk_ab.jsonl | cut -c1-160
done
CLSA_PDL=0 PYTHONPATH=$PWD timeout 40 python3 runs/prof_d.py 2>&1 | grep "^prof\|Error" | tee $R/prof.jsonl
for t in head; do
  if [ $t = head ]; then P=$PWD; else P=$PWD/runs/base; fi
  mkdir -p $R/dec_$t
  CLSA_COMMIT=${CLSA_COMMIT:-$t} PYTHONPATH=$P CONTEXTS=131072 BATCHES=1,8 ROWS='clsa/triton,clsa(k8)/triton' \
    STEM=decode OUT=$R/dec_$t timeout 120 python3 $P/benchmarks/gpu_session.py decode 2>&1 \
    | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
done
sed 's/for N, B in \[(32768, 1), (131072, 1), (131072, 4)\]/for N, B in [(131072, 1), (131072, 8)]/' \
  runs/e2e_probe.py > runs/e2e_probe_b18.py
OUT=$R timeout 120 python3 runs/e2e_probe_b18.py 2>&1 | grep -v Warning | tail -4
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
