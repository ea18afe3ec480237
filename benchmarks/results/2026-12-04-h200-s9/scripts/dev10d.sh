#!/usr/bin/env bash
# device call D (session 9, H200) at HEAD: ops bench (top-k, decode attention, sparse stack of
# 13 layers, B = 1, 8); the decode suite (clsa, clsa(k8)) at 128K B = 1, 8; the WIDE gemv sweep
# and the step with its winners vs the rule. Carry runs/.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/ops $R/dec
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
OUT=$R/ops PYTHONPATH=$PWD timeout 200 python3 benchmarks/gpu_session.py ops 2>&1 | grep -v Warning \
  | grep -o '^[a-z_]* \|"B": [0-9]*\|"key_bits": [0-9]*\|"triton_graph_us": [0-9.]*\|"gather_once": [0-9.]*\|"gather_per_layer": [0-9.]*\|"torch": [0-9.]*\|"error.\{0,200\}' | paste -s -d' ' | sed 's/indexer_topk\|decode_attention\|sparse_decode/\n&/g'
echo
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 ROWS='clsa/triton,clsa(k8)/triton' \
  STEM=decode OUT=$R/dec timeout 150 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
PYTHONPATH=$PWD timeout 330 python3 runs/wide_step.py $R 2>&1 | grep "^step\|^best\|Error\|error" | tee $R/wide_log.txt | cut -c1-400
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
