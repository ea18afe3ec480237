#!/usr/bin/env bash
# Issue 3 evidence on one GPU: small preset on the embedded corpus, yoco pretrain -> clsa distill
# -> clsa sparse, then the bf16 matmul rate of this GPU (for MFU). Results (logs, loss curves,
# summary) land in $OUT; checkpoints stay in $RUN.
#   OUT=/tmp/out STEPS=600 bash benchmarks/train_gpu.sh
set -euo pipefail
export PYTHONUNBUFFERED=1 CLSA_BACKEND=${CLSA_BACKEND:-triton}
RUN=${RUN:-/tmp/clsa-train}
STEPS=${STEPS:-600}
COMMON="--preset small --seq-len 2048 --batch-size 16 --device cuda --synthetic-mix 0.2 --no-progress"
python3 -m clsa.cli train $COMMON --variant yoco --steps "$STEPS" --eval-every $((STEPS / 4)) \
    --save-every "$STEPS" --out-dir "$RUN/yoco"
python3 -m clsa.cli distill $COMMON --variant clsa --from "$RUN/yoco" --steps $((STEPS / 3)) \
    --eval-every $((STEPS / 12)) --save-every $((STEPS / 3)) --out-dir "$RUN/clsa-distill"
python3 -m clsa.cli train $COMMON --variant clsa --from "$RUN/clsa-distill" --sparse --lr 3e-4 \
    --steps $((STEPS / 3)) --eval-every $((STEPS / 12)) --save-every $((STEPS / 3)) --out-dir "$RUN/clsa-sparse"
for s in yoco clsa-distill clsa-sparse; do
    cp "$RUN/$s/log.jsonl" "$OUT/train-$s.jsonl"; cp "$RUN/$s/loss.png" "$OUT/train-$s.png" || true
done
python3 - <<'PY'
import json, os, torch
from triton.testing import do_bench
from clsa.bench.env import environment
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
ms = do_bench(lambda: a @ b, rep=300, return_mode="median")
json.dump({"env": environment(), "bf16_matmul_TFLOPs": 2 * 8192**3 / (ms * 1e-3) / 1e12},
          open(os.path.join(os.environ["OUT"], "train-env.json"), "w"), indent=1)
PY
