#!/usr/bin/env bash
# Issue 6 comparison on one GPU, small preset (k=256, window 256), contexts past k, same data for
# every model. Budget per model: BASE + TUNE language-model steps.
#   dense, swa    BASE + TUNE steps from scratch (one run)
#   yoco          BASE steps (yoco-base), then TUNE more steps --from it (second-stage schedule)
#   sparse rows   from the same yoco-base: DISTILL indexer-only steps (backbone frozen), then
#                 TUNE steps of sparse training (--sparse); the same second-stage schedule as yoco
# A device call holds at most 10 minutes and a lent machine forgets its disk, so PART picks what
# one call runs; each part re-trains yoco-base with the same seed where it needs it.
#   PART=a: dense, swa, yoco-base, yoco        PART=b: yoco-base, clsa, yoco-dsa, indexcache (G=4)
#   PART=c: swa, yoco-base, yoco, clsa (the retrieval run: set MIX, SEQ, BASE... and the T_* caps)
# Each model is evaluated as it lands: perplexity on the stdlib validation split and the synthetic
# suite (needle, multi_needle, mqar, var_track) at 1K and 2K tokens. Small JSON files go to $OUT.
#   OUT=/tmp/out PART=a bash benchmarks/quality_gpu.sh
# CPU dry run of the flow: DEVICE=cpu PRESET=debug SEQ=512 BATCH=2 BASE=4 TUNE=2 DISTILL=2 LENGTHS=512 EVAL_N=2
set -uo pipefail
export PYTHONUNBUFFERED=1 CLSA_BACKEND=${CLSA_BACKEND:-triton}
RUN=${RUN:-/tmp/clsa-quality}
BASE=${BASE:-300} TUNE=${TUNE:-120} DISTILL=${DISTILL:-80}
MIX=${MIX:-0.5}
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-small} SEQ=${SEQ:-2048} LENGTHS=${LENGTHS:-1024 2048}
COMMON="--preset $PRESET --seq-len $SEQ --batch-size ${BATCH:-16} --device $DEVICE --synthetic-mix $MIX --no-progress"
EVAL="--device $DEVICE --lengths $LENGTHS --n ${EVAL_N:-40} --gen-batch-size 20 --seq-len $SEQ --ppl-tokens ${PPL_TOKENS:-131072}"

T_SCRATCH=${T_SCRATCH:-130} T_BASE=${T_BASE:-110} T_YOCO=${T_YOCO:-60} T_DISTILL=${T_DISTILL:-100}
T_SPARSE=${T_SPARSE:-120}
run() {  # name, seconds, clsa arguments...
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    timeout "$secs" python3 -m clsa.cli "$@" --out-dir "$RUN/$name" > "$RUN/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s"
    cp "$RUN/$name/log.jsonl" "$OUT/q-$name.jsonl" 2>/dev/null
}
evaluate() {  # name
    local t0=$SECONDS
    timeout 120 python3 -m clsa.cli eval --model "$RUN/$1" --out "$RUN/eval-$1" $EVAL > "$RUN/eval-$1.log" 2>&1
    echo "eval $1: exit $? in $((SECONDS - t0)) s"
    python3 - "$RUN/eval-$1" "$OUT/q-eval-$1.json" <<'PY'
import json, sys
src, dst = sys.argv[1:]
try:
    rep = json.load(open(f"{src}/eval.json")); rep.pop("config", None)
    rep["synthetic"] = json.load(open(f"{src}/synthetic.json"))
except (OSError, ValueError) as e:
    rep = {"error": repr(e)}
json.dump(rep, open(dst, "w"), indent=1, default=str)
PY
}
mkdir -p "$RUN"
sparse() {  # variant, extra train arguments
    local v=$1
    shift
    run "$v-distill" "$T_DISTILL" distill $COMMON --variant "$v" "$@" --from "$RUN/yoco-base" --steps "$DISTILL" \
        --eval-every "$DISTILL" --save-every $((DISTILL / 2))
    run "$v" "$T_SPARSE" train $COMMON --variant "$v" "$@" --from "$RUN/$v-distill" --sparse --lr 3e-4 \
        --steps "$TUNE" --eval-every "$TUNE" --save-every $((TUNE / 2))
    evaluate "$v"
}
base() {
    run yoco-base "$T_BASE" train $COMMON --variant yoco --steps "$BASE" --eval-every "$BASE" --save-every $((BASE / 2))
}
scratch() {  # variant
    run "$1" "$T_SCRATCH" train $COMMON --variant "$1" --steps $((BASE + TUNE)) --eval-every $((BASE + TUNE)) \
        --save-every $(((BASE + TUNE) / 2))
    evaluate "$1"
}
tuned_yoco() {
    run yoco "$T_YOCO" train $COMMON --variant yoco --from "$RUN/yoco-base" --lr 3e-4 --steps "$TUNE" \
        --eval-every "$TUNE" --save-every $((TUNE / 2))
    evaluate yoco
}
if [ "${PART:-a}" = c ]; then
    scratch swa
    base
    tuned_yoco
    sparse clsa
elif [ "${PART:-a}" = a ]; then
    scratch dense
    scratch swa
    base
    tuned_yoco
else
    base
    sparse clsa
    sparse yoco-dsa
    sparse indexcache --override index_refresh_every=4
fi
