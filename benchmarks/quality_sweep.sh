#!/usr/bin/env bash
# Several small training runs side by side on ONE GPU (a small model leaves most of an H100 idle),
# each cut by a wall-clock cap, then every run evaluated (synthetic suite with teacher-forced
# answer NLL; perplexity unless SKIP_PPL=1). Each SPECS line is "name|seconds|clsa arguments"
# (seconds: the run's cap, empty = T_TRAIN). Lines up to a line holding only "--" form a wave;
# a wave starts when the one before it has finished, so a run may start --from "$RUN/<name>" of
# an earlier wave. A name written "+name" is not waited for by later waves, only at the end
# (e.g. a from-scratch baseline that trains through every wave). Runs whose command is repeated
# after a cap resume from their last checkpoint; a cap sends SIGTERM, so a run saves a checkpoint at
# the step it reached (exit 143) and its evaluation reads that step.
#   OUT=/tmp/out SPECS="$(cat specs.txt)" T_TRAIN=400 bash benchmarks/quality_sweep.sh
# Each run's log.jsonl and eval JSON land in $OUT as q-<name>.jsonl, q-eval-<name>.json.
# SKIP_EVAL=1 skips the evaluation phase entirely: train only (e.g. a first call whose
# checkpoints a later call resumes and evaluates).
# CPU dry run: DEVICE=cpu PRESET=debug LENGTHS=256 EVAL_N=2 EVAL_SEQ=256 OUT=/tmp/o SPECS="a|60|train --variant yoco --steps 3 --seq-len 256 --synthetic-mix 1" bash benchmarks/quality_sweep.sh
# benchmarks/quality_specs/ holds the SPECS of the committed comparisons.
set -uo pipefail
export PYTHONUNBUFFERED=1 CLSA_BACKEND=${CLSA_BACKEND:-triton}
RUN=${RUN:-/tmp/clsa-sweep}
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-small}
T_TRAIN=${T_TRAIN:-400} T_EVAL=${T_EVAL:-150}
LENGTHS=${LENGTHS:-1024 2048}
EVAL="--device $DEVICE --lengths $LENGTHS --n ${EVAL_N:-40} --gen-batch-size 20 --seq-len ${EVAL_SEQ:-2048} --ppl-tokens ${PPL_TOKENS:-131072}"
[ "${SKIP_PPL:-0}" = 1 ] && EVAL="$EVAL --skip-perplexity"
[ -n "${EVAL_TASKS:-}" ] && EVAL="$EVAL --tasks $EVAL_TASKS"
mkdir -p "$RUN" "$OUT"
rm -f "$RUN"/evalsum-*.txt  # a warm device keeps $RUN: summaries of earlier calls are not this one's

train_one() {  # name, seconds, arguments...
    local name=$1 secs=${2:-$T_TRAIN} t0=$SECONDS
    shift 2
    timeout "$secs" python3 -m clsa.cli "$@" --preset "$PRESET" --device "$DEVICE" --no-progress \
        --out-dir "$RUN/$name" > "$RUN/$name.log" 2>&1
    echo "train $name: exit $? in $((SECONDS - t0)) s"
    cp "$RUN/$name/log.jsonl" "$OUT/q-$name.jsonl" 2>/dev/null
    tail -n 3 "$RUN/$name.log" | cut -c1-300
}
eval_one() {  # name
    local t0=$SECONDS
    timeout "$T_EVAL" python3 -m clsa.cli eval --model "$RUN/$1" --out "$RUN/eval-$1" $EVAL > "$RUN/eval-$1.log" 2>&1
    echo "eval $1: exit $? in $((SECONDS - t0)) s"
    python3 - "$RUN/eval-$1" "$OUT/q-eval-$1.json" <<'PY'
import json, sys
src, dst = sys.argv[1:]
try:
    rep = json.load(open(f"{src}/eval.json")); rep.pop("config", None)
    acc, nll = rep["synthetic"].get("accuracy", {}), rep["synthetic"].get("answer_nll", {})
    print(" ", src.rsplit("/", 1)[-1], "ppl", rep.get("perplexity", {}).get("ppl"),
          "acc", json.dumps(acc), "nll", json.dumps(nll))
except (OSError, ValueError, AttributeError) as e:
    rep = {"error": repr(e)}
    print(" ", src, "no result:", repr(e))
json.dump(rep, open(dst, "w"), indent=1, default=str)
PY
}

names=() detached=()
wave() {  # the lines of one wave, trained side by side
    local pids=() line name rest secs
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        name=${line%%|*} rest=${line#*|}
        secs=${rest%%|*} rest=${rest#*|}
        eval "set -- $rest"
        if [ "${name:0:1}" = + ]; then
            name=${name:1}
            train_one "$name" "$secs" "$@" &
            detached+=($!)
        else
            train_one "$name" "$secs" "$@" &
            pids+=($!)
        fi
        names+=("$name")
    done <<< "$1"
    [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
}
block=""
while IFS= read -r line; do
    if [ "$line" = "--" ]; then wave "$block"; block=""; else block+="$line"$'\n'; fi
done <<< "$SPECS"
[ -n "$block" ] && wave "$block"
[ ${#detached[@]} -gt 0 ] && wait "${detached[@]}"
[ "${SKIP_EVAL:-0}" = 1 ] && { echo "SKIP_EVAL=1: no evaluation"; exit 0; }

pids=()
for name in "${names[@]}"; do
    case $name in *-distill) continue ;; esac  # an indexer stage: its model is the one it came from
    eval_one "$name" > "$RUN/evalsum-$name.txt" 2>&1 & pids+=($!); done
wait "${pids[@]}"
cat "$RUN"/evalsum-*.txt
