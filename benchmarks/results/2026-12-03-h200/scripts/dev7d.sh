#!/usr/bin/env bash
# device call (session 7, H200), at the final commit: GPU tests; decode at 128K B=1,4,8 for clsa /
# yoco-dsa / indexcache G=4 (Triton) beside e2e_probe's stock dense and stock clsa at the same
# batches; A/B of the split plan's four-per-SM clause against its parent 912ccb0 (runs/base = git
# archive of it, code only) at B=8,16, HEAD / base / HEAD / base (B=1,4 plan the same splits);
# where the clsa step goes (profiler); the indexer top-k. Carry runs/ (runs/e2e_probe.py).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CLSA_COMMIT=${CLSA_COMMIT:-tree}
mkdir -p $OUT/r
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch,triton;print(torch.__version__,triton.__version__)'; } | tee $OUT/r/env.txt
timeout 150 python3 -m pytest -q -rfs -m gpu tests -p no:cacheprovider 2>&1 \
  | grep -i "^E \|passed\|failed\|^SKIPPED" | head -30 | tee $OUT/r/gpu_tests.txt
CONTEXTS=131072 BATCHES=1,4,8 ROWS='clsa/triton,yoco-dsa/triton,indexcache(G=4)/triton' \
  STEM=decode_b148 OUT=$OUT/r timeout 200 python3 benchmarks/gpu_session.py decode 2>&1 \
  | grep -v Warning | grep -o '"row".*"B": [0-9]*\|"step_ms": [0-9.]*\|"vs_floor": [0-9.]*' | paste - - -
sed 's/for N, B in \[(32768, 1), (131072, 1), (131072, 4)\]/for N, B in [(131072, 1), (131072, 4), (131072, 8)]/' \
  runs/e2e_probe.py > runs/e2e_probe_b148.py
OUT=$OUT/r timeout 160 python3 runs/e2e_probe_b148.py 2>&1 | grep -v Warning | tail -3
ab() {  # $1 = tree, $2 = commit, $3 = stem
  (cd $1 && PYTHONPATH=$PWD CLSA_COMMIT=$2 CONTEXTS=131072 BATCHES=8,16 ROWS=clsa/triton STEM=$3 \
    OUT=$OUT/r timeout 60 python3 benchmarks/gpu_session.py decode 2>&1 | grep -v Warning \
    | grep -o '"B": [0-9]*\|"step_ms": [0-9.]*' | paste - - | sed "s/^/$3 /")
}
ab . $CLSA_COMMIT ab_head1; ab runs/base 912ccb0 ab_base1; ab . $CLSA_COMMIT ab_head2; ab runs/base 912ccb0 ab_base2
OUT=$OUT/r BATCHES=1,8 timeout 90 python3 benchmarks/profile_step.py 2>&1 | grep -v Warning | grep -v "^  0.00" | tail -24
OUT=$OUT/r BATCHES=1,8 timeout 60 python3 benchmarks/gpu_session.py ops 2>&1 | grep '^indexer_topk' \
  | grep -o '"B": [0-9]*\|"key_bits": [0-9]*\|"triton_graph_us": [0-9.]*\|"stock_graph_us": [0-9.]*\|"floor_us": [0-9.]*' | paste - - - - -
ls $OUT/r; cd $OUT && tar -cf results.tar r && rm -rf r
