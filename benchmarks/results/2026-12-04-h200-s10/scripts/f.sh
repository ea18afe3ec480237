#!/usr/bin/env bash
# device call F (session 10, H200) at HEAD: GPU tests (attention, sparse, model, engine); ops bench
# (top-k, decode attention, sparse stack of 13 layers, B = 1, 8); the decode suite (clsa,
# clsa(k8)) at 128K B = 1, 8; e2e_probe dense / stock at B = 1, 8. Carry runs/s10.
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/ops $R/dec
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $R/env.txt
PYTHONPATH=$PWD timeout 120 python3 -m pytest -q -rfs -m gpu tests/ops/test_attention_decode.py tests/ops/test_sparse_attention.py tests/model tests/engine -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
OUT=$R/ops PYTHONPATH=$PWD timeout 170 python3 benchmarks/gpu_session.py ops 2>&1 | grep -v Warning \
  | grep -o '^[a-z_]* \|"B": [0-9]*\|"key_bits": [0-9]*\|"triton_graph_us": [0-9.]*\|"gather_once": [0-9.]*\|"gather_per_layer": [0-9.]*\|"torch": [0-9.]*\|"error.\{0,200\}' | paste -s -d' ' | sed 's/indexer_topk\|decode_attention\|sparse_decode/\n&/g'
echo
CLSA_COMMIT=${CLSA_COMMIT:-head} PYTHONPATH=$PWD CONTEXTS=131072 BATCHES=1,8 ROWS='clsa/triton,clsa(k8)/triton' \
  STEM=decode OUT=$R/dec timeout 130 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
OUT=$R timeout 120 python3 runs/s10/e2e_probe_b18.py 2>&1 | grep -v Warning | tail -4
cd $OUT && tar cf r.tar r && ls -R $OUT/r | head -30
