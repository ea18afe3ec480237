#!/usr/bin/env bash
# Issue 3 evidence on one GPU: small preset on the embedded corpus, yoco pretrain -> clsa distill
# -> clsa sparse, plus the bf16 matmul rate of this GPU (for MFU). Each stage has a wall-clock
# cap (T1/T2/T3 seconds): a stage that hits it stops at its last checkpoint (SAVE steps apart) and
# the next stage starts from there. Logs and loss curves land in $OUT as each stage ends;
# checkpoints stay in $RUN.
#   OUT=/tmp/out STEPS=600 bash benchmarks/train_gpu.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 CLSA_BACKEND=${CLSA_BACKEND:-triton}
RUN=${RUN:-/tmp/clsa-train}
STEPS=${STEPS:-600}
T1=${T1:-240} T2=${T2:-110} T3=${T3:-110}
SAVE=$((STEPS / 6))
COMMON="--preset small --seq-len 2048 --batch-size 16 --device cuda --synthetic-mix 0.2 --no-progress"

python3 - <<'PY'
import json, os, torch
from triton.testing import do_bench
from clsa.bench.env import environment
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
ms = do_bench(lambda: a @ b, rep=300, return_mode="median")
json.dump({"env": environment(), "bf16_matmul_TFLOPs": 2 * 8192**3 / (ms * 1e-3) / 1e12},
          open(os.path.join(os.environ["OUT"], "train-env.json"), "w"), indent=1)
PY

stage() {  # name, seconds, clsa arguments...
    local name=$1 secs=$2
    shift 2
    timeout "$secs" python3 -m clsa.cli "$@" --out-dir "$RUN/$name" > "$OUT/train-$name.log" 2>&1
    echo "stage $name exit $? after at most ${secs}s"
    cp "$RUN/$name/log.jsonl" "$OUT/train-$name.jsonl" 2>/dev/null
    cp "$RUN/$name/loss.png" "$OUT/train-$name.png" 2>/dev/null
}
stage yoco "$T1" train $COMMON --variant yoco --steps "$STEPS" --eval-every $((STEPS / 4)) --save-every "$SAVE"
stage clsa-distill "$T2" distill $COMMON --variant clsa --from "$RUN/yoco" --steps $((STEPS / 3)) \
    --eval-every $((STEPS / 12)) --save-every "$SAVE"
stage clsa-sparse "$T3" train $COMMON --variant clsa --from "$RUN/clsa-distill" --sparse --lr 3e-4 \
    --steps $((STEPS / 3)) --eval-every $((STEPS / 12)) --save-every "$SAVE"
