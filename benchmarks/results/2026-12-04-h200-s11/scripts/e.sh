#!/usr/bin/env bash
# device call E (session 11, H200) at HEAD: every GPU test; ops bench (top-k, dense decode
# attention, the 13-layer sparse stack with kv_ready after the first layer, B = 1, 8)
set -o pipefail
export PYTHONUNBUFFERED=1
R=$OUT/r; mkdir -p $R/ops
PYTHONPATH=$PWD timeout 200 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED\|^FAILED" | head -20 | tee $R/gpu_tests.txt
(cd $OUT && tar cf r.tar r)
OUT=$R/ops PYTHONPATH=$PWD timeout 200 python3 benchmarks/gpu_session.py ops 2>&1 | grep -v Warning \
  | grep -o '^[a-z_]* \|"B": [0-9]*\|"key_bits": [0-9]*\|"triton_graph_us": [0-9.]*\|"gather_once": [0-9.]*\|"gather_per_layer": [0-9.]*\|"torch": [0-9.]*\|"error.\{0,200\}' | paste -s -d' ' | sed 's/indexer_topk\|decode_attention\|sparse_decode/\n&/g'
cd $OUT && tar cf r.tar r
