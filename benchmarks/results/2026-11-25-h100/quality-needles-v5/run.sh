#!/usr/bin/env bash
# device call (session 6): quality v5 (seeds 2, 3) on v3's setup (ccf9ce5 snapshot, v2's yoco-base@3000); SPEC names the spec file
set -o pipefail
R=$PWD
mkdir -p /tmp/s /tmp/qv5 $OUT/q && tar -xf runs/snap.tar -C /tmp/s && tar -xf runs/qv2/ckpt-yoco-base.tar -C /tmp/qv5 && ls /tmp/qv5 && cd /tmp/s
export PYTHONPATH=/tmp/s PYTHONUNBUFFERED=1 CLSA_COMMIT=ccf9ce5
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())" | tee $OUT/q/versions.txt
COMMON="--seq-len 512 --batch-size 64 --synthetic-mix 1.0 --synthetic-min-len 1 --synthetic-tasks needle,multi_needle --warmup 100 --keep-checkpoints 1" \
TUNE=1500 DISTILL=150 LR=2e-3 T_EVAL=80 EVAL_N=40 EVAL_SEQ=512 SKIP_PPL=1 EVAL_TASKS="needle multi_needle" \
LENGTHS="256 512 1024" OUT=$OUT/q RUN=/tmp/qv5 PRESET=tiny CLSA_BACKEND=triton \
SPECS="$(cat $R/benchmarks/quality_specs/$SPEC)" timeout 540 bash benchmarks/quality_sweep.sh 2>&1 | grep -v "Warning\|warn" | tail -30
ls $OUT/q
