#!/usr/bin/env bash
# device call (session 7, H200): A/B of the rotary fusion (73f21bf) against its parent b53939b
# (runs/base = git archive b53939b, code only), clsa/triton at 128K B=1,4,8, run HEAD / base /
# HEAD / base in one call; then where the step goes (profiler, B=1,8) and the indexer top-k.
set -o pipefail
export PYTHONUNBUFFERED=1
mkdir -p $OUT/r
ab() {  # $1 = tree, $2 = commit, $3 = stem
  (cd $1 && PYTHONPATH=$PWD CLSA_COMMIT=$2 CONTEXTS=131072 BATCHES=1,4,8 ROWS=clsa/triton STEM=$3 \
    OUT=$OUT/r timeout 100 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning \
    | grep -o '"B": [0-9]*\|"step_ms": [0-9.]*' | paste - - | sed "s/^/$3 /")
}
ab . 73f21bf ab_head1; ab runs/base b53939b ab_base1; ab . 73f21bf ab_head2; ab runs/base b53939b ab_base2
export PYTHONPATH=$PWD CLSA_COMMIT=73f21bf
OUT=$OUT/r BATCHES=1,8 timeout 120 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -40
OUT=$OUT/r BATCHES=1,8 timeout 120 python3 benchmarks/gpu_session.py ops 2>&1 | grep -v Warning \
  | grep -o '^[a-z_]* \|"B": [0-9]*\|"key_bits": [0-9]*\|"triton_graph_us": [0-9.]*\|"stock_graph_us": [0-9.]*\|"floor_us": [0-9.]*' | paste -s -d' ' | sed 's/\(indexer_topk\|decode_attention\|sparse_decode\) /\n\1 /g'
ls $OUT/r
