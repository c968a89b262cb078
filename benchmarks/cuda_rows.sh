#!/usr/bin/env bash
# The CUDA rows of benchmarks/speed.py and benchmarks/train_iteration.py, in one run on a bare GPU
# machine (the `device` tool: torch + CUDA there, but no mmengine / mmcv / mmpretrain and no
# package registry). Each stage runs under its own timeout and writes its log and JSON to OUT_DIR,
# so one hang costs only its stage.
#
#   bash benchmarks/cuda_rows.sh OUT_DIR [STAGE ...]
#
# Stages (default: all but train-compiled, in this order): tests fmnist inference train compiled;
# train-compiled (not measured yet: compiling ResNet-50's forward and backward at five sizes, per
# precision, for SAN and plain takes minutes) runs alone; train-graphed (the train rows with every
# step replayed from a CUDA graph, the GPU's work without the host's launches), cudagraph (below)
# and suite (the whole test suite) only when named. Measured on an H100 (torch 2.11,
# 2026-11-27): tests 38 s; fmnist 35 s eager + 133 s compile + 118 s reduce-overhead; inference
# over 150 s (eager and CUDA-graph rows of three architectures at two sizes); train 61 s for
# ResNet-50. On an H200 (same torch, 2026-11-27): tests 60 s, train-graphed 51 s (fp32 only),
# compiled 160 s, fmnist with FMNIST_VARIANTS="eager cuda-graph" 83 s. Together they do not fit
# one 10-minute call of the device tool: pick stages, e.g. `bash benchmarks/cuda_rows.sh $OUT
# tests fmnist train` then `... inference`.
# FMNIST_VARIANTS=... picks train_iteration.py's variants, FMNIST_AMP=1 runs them with --amp;
# FMNIST_PROFILE=N adds its operator table
# for N iterations and their Chrome traces (OUT/trace_<variant>.json.gz; where an iteration's time
# goes; profiled windows run slower). The cudagraph stage is the inference stage's CUDA-graph rows
# alone, for CUDAGRAPH_ARCHS (default all three) at CUDAGRAPH_SIZES (default 224 96).
# Carried in from the checkout, both ignored by git (see the README's "Performance" section):
#   .whl/                      wheels of mmengine, mmcv-lite, mmpretrain and their pure-Python needs
#   .device/fashion-mnist/     the four Fashion-MNIST .gz files (for the fmnist stage)
set -u
OUT=${1:?usage: bash benchmarks/cuda_rows.sh OUT_DIR [STAGE ...]}
shift
STAGES=${*:-tests fmnist inference train compiled}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of the commands here

if ! $PY -c 'import mmpretrain' 2>/dev/null; then
    [ -d .whl ] || { echo 'no mmpretrain and no .whl/ to install it from'; exit 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
{ nvidia-smi -L; $PY -c 'import torch; print("torch", torch.__version__, torch.version.cuda,
torch.cuda.get_device_name())'; nproc; } 2>&1 | tee "$OUT/stages.log"

stage() {  # stage NAME SECONDS COMMAND...: run it under a timeout; its log goes to
    # OUT/stages.log (the device tool brings back at most 8 files)
    local name=$1 seconds=$2 rc
    shift 2
    echo "=== $name (at most $seconds s): $*" | tee -a "$OUT/stages.log"
    local start=$SECONDS
    # Written to OUT as it runs: a call that the device tool cuts off still brings it back.
    timeout -k 10 "$seconds" "$@" 2>&1 | tee -a "$OUT/stages.log" > "/tmp/stage_$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: rc=$rc after $((SECONDS - start)) s" | tee -a "$OUT/stages.log"
    grep -v 'pkg_resources\|_bootstrap._exec' "/tmp/stage_$name.log" | tail -n 25
}

for s in $STAGES; do
    case $s in
    tests)
        stage tests 90 $PY -m pytest -q -x -p no:cacheprovider tests/test_models \
            tests/test_benchmarks ;;
    suite)  # the whole suite on the GPU machine (no onnx / onnxruntime there: that test is
        # deselected), or SUITE_ARGS (pytest arguments, e.g. "tests/test_tools -k 'not onnx'").
        # -v names each test as it ends and -x --tb=short prints the first failure at once: on
        # an H200 (torch 2.11, 2026-11-27) `-q` ran 183 of 371 tests in 400 s, one failed, and the
        # cut-off run never said which. Those 183 take 150 s on the 2-core CPU machine (all 371:
        # 350 s; test_engine 168 s, test_tools 114 s, the rest under 30 s per folder; a cold
        # inductor cache adds 7 s), so on that machine the suite needs several calls. Not yet
        # run there (everything from the failed test on; tests/test_models passed in `tests`):
        # SUITE_ARGS="tests/test_engine/test_compile.py::test_runner_compile_option_compiles_the_backbone
        # tests/test_engine/test_compile.py::test_dict_tag_guards_skip_sans_whole_backbone
        # tests/test_engine/test_compile.py::test_compiled_calls_keep_the_backbones_guards_skipped
        # tests/test_engine/test_compile.py::test_dict_tag_guards_see_every_change_inside_a_skipped_layer
        # tests/test_engine/test_config_utils.py tests/test_engine/test_hooks
        # tests/test_engine/test_model_wrappers.py tests/test_engine/test_runners tests/test_utils"
        # (about 115 s on CPU; the three dict-tag tests, added later, skip on a torch without
        # that dynamo option), then SUITE_ARGS="tests/test_tools" (114 s on CPU).
        eval "suite_args=(${SUITE_ARGS:-tests -k "'not onnx'"})"
        stage suite 420 $PY -m pytest -v -x --tb=short --durations=30 -p no:cacheprovider \
            "${suite_args[@]}" ;;
    inference)  # eager, and eager captured in CUDA graphs; batch 1
        stage inference 240 $PY benchmarks/speed.py --device "$DEVICE" --only inference cudagraph \
            --batches 1 --sizes 224 96 --control --repeats 6 --min-run-time 0.1 \
            --out "$OUT/speed_inference_b1_cuda.json" ;;
    cudagraph)  # the inference stage's CUDA-graph rows alone, for some architectures / sizes
        stage cudagraph 150 $PY benchmarks/speed.py --device "$DEVICE" --only cudagraph \
            --archs ${CUDAGRAPH_ARCHS:-resnet18 resnet50 mobilenetv2} \
            --sizes ${CUDAGRAPH_SIZES:-224 96} --batches 1 --control --repeats 6 \
            --min-run-time 0.1 --out "$OUT/speed_cudagraph_b1_cuda.json" ;;
    train)  # K = 5 sizes vs the sum of 5 plain steps, fp32 / fp16 / bf16
        stage train 150 $PY benchmarks/speed.py --device "$DEVICE" --only train \
            --archs resnet50 --train-batch 64 --precisions fp32 fp16 bf16 \
            --no-train-memory --repeats 10 --min-run-time 0.3 \
            --out "$OUT/speed_train_b64_cuda.json" ;;
    train-graphed)  # every step (SAN's, each plain one) replayed from its own CUDA graph (AMP:
        # forward and scaled backward captured, the scaler's step eager)
        stage train-graphed 200 $PY benchmarks/speed.py --device "$DEVICE" --only train \
            --archs resnet50 --train-batch 64 --precisions ${TRAIN_PRECISIONS:-fp32 fp16 bf16} \
            --train-cuda-graph \
            --no-train-memory --repeats 10 --min-run-time 0.3 \
            --out "$OUT/speed_train_b64_cuda_graph_cuda.json" ;;
    train-compiled)  # the same, both backbones compiled with CUDA graphs (one graph per size)
        stage train-compiled 540 $PY benchmarks/speed.py --device "$DEVICE" --only train \
            --archs resnet50 --train-batch 64 --precisions ${TRAIN_PRECISIONS:-fp32 bf16} \
            --train-compile --compile-mode reduce-overhead --no-train-memory --repeats 10 \
            --min-run-time 0.3 --out "$OUT/speed_train_b64_compiled_cuda.json" ;;
    fmnist)  # the main job's iteration: eager vs compiled vs CUDA graphs
        if [ ! -f data/fashion_mnist/train-images-idx3-ubyte ]; then
            mkdir -p /usr/share/datasets/fashion-mnist
            cp .device/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
            $PY tools/prepare_fashion_mnist.py --no-install >> "$OUT/stages.log" 2>&1
        fi
        stage fmnist 420 $PY benchmarks/train_iteration.py \
            configs/fashion_mnist/san_resnet18_fmnist.py --iters 200 --timeout 170 \
            --variants ${FMNIST_VARIANTS:-eager batched-kernels reduce-overhead} \
            ${FMNIST_PROFILE:+--profile $FMNIST_PROFILE --trace-dir $OUT} ${FMNIST_AMP:+--amp} \
            --cfg-options train_dataloader.num_workers=8 train_dataloader.persistent_workers=True \
            --out "$OUT/speed_fmnist_iteration_cuda.json" ;;
    compiled)  # torch.compile with CUDA graphs, frozen weights; batch 1; with the A/A control
        # (a compiled copy of the plain model): 160 s without it on an H200
        stage compiled 300 $PY benchmarks/speed.py --device "$DEVICE" --only compiled \
            --compile-mode reduce-overhead --freeze only --archs resnet18 mobilenetv2 \
            --batches 1 --sizes 224 96 --control --repeats 8 --min-run-time 0.1 \
            --out "$OUT/speed_compiled_cuda.json" ;;
    *) echo "unknown stage $s"; exit 2 ;;
    esac
done
