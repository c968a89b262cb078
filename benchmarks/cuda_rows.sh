#!/usr/bin/env bash
# The GPU rows of docs/performance.md (benchmarks/speed.py, benchmarks/train_iteration.py), in one
# run on a GPU machine with torch but maybe no OpenMMLab and no package registry. Each stage runs
# under its own timeout and writes its JSON to OUT_DIR as speed_<benchmark>_<card>_cuda.json (card:
# h100, h200... from nvidia-smi, or CARD=...), so one hang costs only its stage; copy the files to
# docs/results/ and run `python benchmarks/speed_tables.py`.
#
#   bash benchmarks/cuda_rows.sh OUT_DIR [STAGE ...]
#
# Stages (default: tests inference cudagraph train compiled fmnist):
#   tests           the model and benchmark tests on the GPU (about a minute)
#   inference       eager batch 1 and regenerating every kernel, A/A control (about 3 min)
#   cudagraph       the eager forwards captured in CUDA graphs, A/A control (about 2 min)
#   compiled        torch.compile reduce-overhead, frozen, batch 1, A/A control (about 4 min)
#   train           ResNet-50, batch 64, five sizes, fp32 / fp16 / bf16, eager (about 1 min)
#   train-graphed   the same with every step replayed from its CUDA graph (about 2 min)
#   train-compiled  the same with both backbones compiled with CUDA graphs (not measured yet; long)
#   fmnist          the Fashion-MNIST iteration (FMNIST_VARIANTS, default eager cuda-graph
#                   reduce-overhead; FMNIST_AMP=1: --amp; about 5 min)
#   suite           the whole test suite, or SUITE_ARGS (pytest arguments)
# They do not all fit one 10-minute call of a lent machine: pick stages per call.
# Carried in from the checkout, both ignored by git (docs/performance.md, "How to measure"):
#   .whl/                      wheels of mmengine, mmcv-lite, mmpretrain and their pure-Python needs
#   .device/fashion-mnist/     the four Fashion-MNIST .gz files (for the fmnist stage)
set -u
OUT=${1:?usage: bash benchmarks/cuda_rows.sh OUT_DIR [STAGE ...]}
shift
STAGES=${*:-tests inference cudagraph train compiled fmnist}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of the commands here
CARD=${CARD:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 |
    awk '{print tolower($2)}')}
CARD=${CARD:-gpu}

if ! $PY -c 'import mmpretrain' 2>/dev/null; then
    [ -d .whl ] || { echo 'no mmpretrain and no .whl/ to install it from'; exit 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
{ nvidia-smi -L; $PY -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
  nproc; } 2>&1 | tee "$OUT/stages.log"

stage() {  # stage NAME SECONDS COMMAND...: run it under a timeout, its log into OUT/stages.log
    local name=$1 seconds=$2 rc start=$SECONDS
    shift 2
    echo "=== $name (at most $seconds s): $*" | tee -a "$OUT/stages.log"
    # written to OUT as it runs: a call that is cut off still brings it back
    timeout -k 10 "$seconds" "$@" 2>&1 | tee -a "$OUT/stages.log" > "/tmp/stage_$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: rc=$rc after $((SECONDS - start)) s" | tee -a "$OUT/stages.log"
    grep -v 'pkg_resources\|_bootstrap._exec' "/tmp/stage_$name.log" | tail -n 25
}

speed() {  # speed NAME SECONDS BENCHMARK ARGUMENTS...: speed.py writing
    # OUT/speed_BENCHMARK_CARD_cuda.json
    local name=$1 seconds=$2 file="$OUT/speed_$3_${CARD}_cuda.json"
    shift 3
    stage "$name" "$seconds" $PY benchmarks/speed.py --device "$DEVICE" "$@" --out "$file"
}

TRAIN="--only train --archs resnet50 --train-batch 64 --no-train-memory --repeats 10"
TRAIN="$TRAIN --min-run-time 0.3"
for s in $STAGES; do
    case $s in
    tests)
        stage tests 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_models \
            tests/test_benchmarks ;;
    suite)  # -v names each test as it ends, -x --tb=short prints the first failure at once
        eval "suite_args=(${SUITE_ARGS:-tests -k "'not onnx'"})"
        stage suite 540 $PY -m pytest -v -x --tb=short --durations=30 -p no:cacheprovider \
            "${suite_args[@]}" ;;
    inference)
        speed inference 300 inference --only inference --batches 1 --sizes 224 96 --control \
            --repeats 8 --min-run-time 0.1 ;;
    cudagraph)
        speed cudagraph 240 cudagraph --only cudagraph --batches 1 --sizes 224 96 --control \
            --repeats 8 --min-run-time 0.1 ;;
    compiled)
        speed compiled 400 compiled --only compiled --compile-mode reduce-overhead --freeze only \
            --archs resnet18 mobilenetv2 --batches 1 --sizes 224 96 --control --repeats 8 \
            --min-run-time 0.1 ;;
    train)  # shellcheck disable=SC2086
        speed train 200 train $TRAIN --precisions fp32 fp16 bf16 ;;
    train-graphed)  # shellcheck disable=SC2086
        speed train-graphed 300 train_graphed $TRAIN --precisions fp32 fp16 bf16 \
            --train-cuda-graph ;;
    train-compiled)  # shellcheck disable=SC2086
        speed train-compiled 540 train_compiled $TRAIN --precisions fp32 bf16 --train-compile \
            --compile-mode reduce-overhead ;;
    fmnist)
        if [ ! -f data/fashion_mnist/train-images-idx3-ubyte ]; then
            mkdir -p /usr/share/datasets/fashion-mnist
            cp .device/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
            $PY tools/prepare_fashion_mnist.py --no-install >> "$OUT/stages.log" 2>&1
        fi
        stage fmnist 480 $PY benchmarks/train_iteration.py \
            configs/fashion_mnist/san_resnet18_fmnist.py --iters 200 --timeout 170 \
            --variants ${FMNIST_VARIANTS:-eager cuda-graph reduce-overhead} ${FMNIST_AMP:+--amp} \
            --cfg-options train_dataloader.num_workers=8 train_dataloader.persistent_workers=True \
            --out "$OUT/speed_fmnist_iteration_${CARD}_cuda.json" ;;
    *) echo "unknown stage $s"; exit 2 ;;
    esac
done
