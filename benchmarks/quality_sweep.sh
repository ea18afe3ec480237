#!/usr/bin/env bash
# Several small training runs side by side on ONE GPU (a small model leaves most of an H100 idle),
# each cut by a wall-clock cap, then every run evaluated (synthetic suite with teacher-forced
# answer NLL; perplexity unless SKIP_PPL=1). Each SPECS line is "name|clsa arguments"; a name
# may start from another run of the same sweep with --from "$RUN/<name>" (it then waits for it:
# put it in a later WAVE, lines separated by a line holding only "--").
#   OUT=/tmp/out SPECS="$(cat specs.txt)" T_TRAIN=400 bash benchmarks/quality_sweep.sh
# Each run's log.jsonl and eval JSON land in $OUT as q-<name>.jsonl, q-eval-<name>.json.
# CPU dry run: DEVICE=cpu PRESET=debug LENGTHS=512 EVAL_N=2 T_TRAIN=60 OUT=/tmp/o SPECS="a|train --variant yoco --steps 3 --seq-len 512 --synthetic-mix 1 --synthetic-min-len 400" bash benchmarks/quality_sweep.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 CLSA_BACKEND=${CLSA_BACKEND:-triton}
RUN=${RUN:-/tmp/clsa-sweep}
DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-small}
T_TRAIN=${T_TRAIN:-400} T_EVAL=${T_EVAL:-150}
LENGTHS=${LENGTHS:-1024 2048}
EVAL="--device $DEVICE --lengths $LENGTHS --n ${EVAL_N:-40} --gen-batch-size 20 --seq-len ${EVAL_SEQ:-2048} --ppl-tokens ${PPL_TOKENS:-131072}"
[ "${SKIP_PPL:-0}" = 1 ] && EVAL="$EVAL --skip-perplexity"
mkdir -p "$RUN" "$OUT"

train_one() {  # name, arguments...
    local name=$1 t0=$SECONDS
    shift
    # shellcheck disable=SC2086
    timeout "$T_TRAIN" python3 -m clsa.cli "$@" --preset "$PRESET" --device "$DEVICE" --no-progress \
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

names=()
wave() {  # the lines of one wave, trained side by side
    local pids=() line
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        local name=${line%%|*} args=${line#*|}
        names+=("$name")
        # shellcheck disable=SC2086
        eval "set -- $args"
        train_one "$name" "$@" &
        pids+=($!)
    done <<< "$1"
    wait "${pids[@]}"
}
block=""
while IFS= read -r line; do
    if [ "$line" = "--" ]; then wave "$block"; block=""; else block+="$line"$'\n'; fi
done <<< "$SPECS"
[ -n "$block" ] && wave "$block"

pids=()
for name in "${names[@]}"; do eval_one "$name" > "$RUN/evalsum-$name.txt" 2>&1 & pids+=($!); done
wait "${pids[@]}"
cat "$RUN"/evalsum-*.txt
