#!/usr/bin/env bash
# Every CPU row of docs/performance.md: each stage runs benchmarks/speed.py and writes
# docs/results/speed_<benchmark>_<MACHINE>_cpu.json, then the tables are regenerated from the files.
#
#   bash benchmarks/cpu_rows.sh [STAGE ...]      # default: every stage, in this order
#
# Stages (times on a 2-core AMD EPYC; run it with nothing else on the machine):
#   inference      eager, batch 1, three architectures at 224 / 160 / 96 px, the A/A control in the
#                  same rounds, 3 fresh processes of 30 rounds (about 18 min)
#   inference-b32  the same at batch 32, one process of 5 rounds (about 8 min)
#   compiled       torch.compile with inductor freezing, ResNet-18 and MobileNetV2 at 224 / 96 px,
#                  batch 1, guards evaluated and skipped, the A/A control, 3 processes
#                  (about 16 min)
#   train          one five-size step vs the five plain steps, ResNet-18 and MobileNetV2, batch 8,
#                  with peak memory (about 10 min)
#   pipeline       the training pipelines' images/s (about 1 min)
# MACHINE (default epyc) names the files, RESULTS (default docs/results) holds them; PYTHON (default
# .venv/bin/python) runs speed.py; EXTRA_ARGS are appended to every command, where they win (a smoke
# run: RESULTS=/tmp/rows EXTRA_ARGS="--archs mobilenetv2 --sizes 64 --processes 1 --repeats 2").
set -u
cd "$(dirname "$0")/.." || exit 1
MACHINE=${MACHINE:-epyc}
RESULTS=${RESULTS:-docs/results}
EXTRA_ARGS=${EXTRA_ARGS:-}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STAGES=${*:-inference inference-b32 compiled train pipeline}
BATCH1="--batches 1 --control --processes 3 --repeats 30 --min-run-time 0.05"
failed=""
mkdir -p "$RESULTS"

stage() {  # stage NAME BENCHMARK ARGUMENTS...: speed.py ARGUMENTS --out its file, timed
    local name=$1 out="$RESULTS/speed_$2_${MACHINE}_cpu.json" start=$SECONDS rc
    shift 2
    echo "=== $name: python benchmarks/speed.py $* $EXTRA_ARGS --out $out"
    # shellcheck disable=SC2086  # EXTRA_ARGS are words
    $PY benchmarks/speed.py "$@" $EXTRA_ARGS --out "$out"
    rc=$?
    echo "=== $name: rc=$rc after $((SECONDS - start)) s"
    [ "$rc" = 0 ] || failed="$failed $name"
}

for s in $STAGES; do
    case $s in
    inference)
        stage inference inference --only inference --archs resnet18 resnet50 mobilenetv2 \
            --sizes 224 160 96 $BATCH1 ;;
    inference-b32)
        stage inference-b32 inference_b32 --only inference --archs resnet18 resnet50 mobilenetv2 \
            --sizes 224 160 96 --batches 32 --repeats 5 --min-run-time 0.2 ;;
    compiled)
        stage compiled compiled --only compiled --archs resnet18 mobilenetv2 --sizes 224 96 \
            --freeze only --guard-eval both $BATCH1 ;;
    train)
        stage train train --only train --archs resnet18 mobilenetv2 --train-batch 8 --repeats 4 ;;
    pipeline)
        stage pipeline pipeline --only pipeline --repeats 5 ;;
    *) echo "unknown stage $s (stages: inference inference-b32 compiled train pipeline)"; exit 2 ;;
    esac
done
[ "$RESULTS" != docs/results ] || $PY benchmarks/speed_tables.py
echo "=== all stages: $SECONDS s${failed:+; failed:$failed}"
[ -z "$failed" ]
