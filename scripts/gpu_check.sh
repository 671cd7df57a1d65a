#!/usr/bin/env bash
# The CUDA checks for a bare offline GPU machine, in order of value, each part under its own time
# limit (all of them under 9 minutes), then a summary table.
#
#   scripts/gpu_check.sh [--dry-run]
#
# Uses the machine's own torch and timm (PYTHON, default python3). Installs the wheels that
# scripts/prepare_gpu_wheels.sh put into WHEELS (default .whl/) with --no-index into a folder of its
# own, so nothing preinstalled changes; without wheels there, it uses what PYTHON has (a `make setup`
# venv: PYTHON=.venv/bin/python). Where mmcv has no compiled ops (the carried mmcv-lite), it builds
# them for the visible GPU from the carried mmcv source in the background from the start, for the
# last parts. Without CUDA each CUDA part is reported as skipped. Logs, the benchmark and
# summary.md go to GPU_CHECK_DIR (default work_dirs/gpu_check).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
DIR=${GPU_CHECK_DIR:-work_dirs/gpu_check}
BUDGET=${GPU_CHECK_BUDGET:-530}  # seconds for all parts together: under 9 minutes
SCALE=${GPU_CHECK_SCALE:-1}      # multiplies every limit: for slow machines (the CPU rehearsal)

# name|time limit (s)|what it checks. The parts after benchmark-compile run in the time that is left.
PARTS=(
    "setup|60|installs the carried wheels next to the machine's torch; versions; LaPEViT runs on the CPU"
    "cuda-vs-cpu|100|LaPEViT on CUDA equals the CPU, fp32 forward + backward: every pe_join x pe_type, window attention"
    "autocast|60|bf16 and fp16 autocast training steps finite and close to fp32; inference caches exact"
    "benchmark|120|tools/benchmark.py ViT-B/16 512x512 batch 16, fp32 and bf16: lape, add, timm (step time, memory, MFU)"
    "benchmark-compile|150|the same with torch.compile'd copies"
    "mmcv-ops|120|mmcv's ops built for this GPU: NMS, RoIAlign, deformable attention and ViT-Adapter CUDA vs CPU"
    "train|90|tools/train.py: a few bf16 iterations of the tiny UPerNet and Mask R-CNN"
)
FIRST_OPTIONAL=mmcv-ops

if [[ "${1:-}" == --dry-run ]]; then
    echo "scripts/gpu_check.sh: ${#PARTS[@]} parts in this order, within $(( BUDGET * SCALE )) s together:"
    for part in "${PARTS[@]}"; do
        IFS='|' read -r name limit what <<<"$part"
        [[ "$name" == "$FIRST_OPTIONAL" ]] && echo "  then, in the time left:"
        printf '  %-18s %4d s  %s\n' "$name" "$(( limit * SCALE ))" "$what"
    done
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: scripts/gpu_check.sh [--dry-run]" >&2; exit 2
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SITE=$DIR/site            # the carried wheels
MMCV_SITE=$DIR/mmcv-ops   # mmcv with ops, once built here (kept for a rerun)
rm -rf "$DIR"/mmcv-build* "$DIR"/mmcv-wheel "$DIR"/benchmark* "$DIR"/*.skip "$DIR"/*.log "$DIR"/*.pytest "$DIR"/*.txt \
    "$DIR"/summary.md
export PYTHONPATH="$MMCV_SITE:$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PYTHON WHEELS DIR SITE MMCV_SITE ROOT

has_cuda() { [[ "$CUDA" == 1 ]]; }  # CUDA: what the setup part found
has_mmcv_ops() { "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mmcv._ext") is None)' 2>/dev/null; }
skip() { echo "$*" >"$SKIP_FILE"; echo "skipped: $*"; }

# pytest on test ids; a run whose tests were all skipped is reported as skipped, with pytest's reason.
run_pytest() {
    local log="$DIR/$PART.pytest"
    "$PYTHON" -m pytest -p no:cacheprovider -q -rs "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    if (( rc == 0 )) && tail -n 1 "$log" | grep -qE '^[= ]*[0-9]+ skipped(, [0-9]+ warnings?)? in'; then
        skip "$(sed -n 's/^SKIPPED \[[0-9]*\] [^ ]* //p' "$log" | head -n 1)"
    fi
    return "$rc"
}

part_setup() {
    rm -rf "$SITE"
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl || return
    else
        echo "no wheels in $WHEELS: using what $PYTHON has"
    fi
    "$PYTHON" - <<'EOF'
import importlib
import os
import platform

import torch

for name in ('torch', 'timm', 'numpy', 'cv2', 'mmengine', 'mmcv', 'mmseg', 'mmdet', 'mmpretrain'):
    module = importlib.import_module(name)
    print(f'{name:10s} {module.__version__:14s} {module.__file__}')
from lape_mm import LaPEViT  # noqa: E402

outs = LaPEViT(arch='tiny', img_size=64, out_indices=(1, 3))(torch.randn(1, 3, 64, 64))
print('LaPEViT-T on the CPU:', [tuple(o.shape) for o in outs])
device = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'
print(f'Python {platform.python_version()}; CUDA: {device}')
with open(os.path.join(os.environ['DIR'], 'device.txt'), 'w') as f:
    f.write(f'{int(torch.cuda.is_available())}\n{device} | torch {torch.__version__} | Python {platform.python_version()}\n')
EOF
}

part_cuda_vs_cpu() {
    run_pytest tests/test_gpu.py::test_every_join_and_pe_type_matches_cpu tests/test_gpu.py::test_window_attention_matches_cpu
}

part_autocast() {
    run_pytest tests/test_gpu.py::test_autocast_training_step_is_finite_and_close_to_fp32 \
               tests/test_gpu.py::test_inference_caches_keep_outputs_under_autocast
}

benchmark() {  # $1: output folder; more arguments go to tools/benchmark.py
    has_cuda || { skip "no CUDA device"; return 0; }
    local out=$1; shift
    "$PYTHON" tools/benchmark.py --device cuda --size 512 512 --batch 16 --amp --amp-dtype bfloat16 \
        --models lape add timm --warmup 2 --matmul-size 8192 --out "$out" "$@"
}
part_benchmark() { benchmark "$DIR/benchmark" --repeats 5; }
part_benchmark_compile() { benchmark "$DIR/benchmark-compile" --repeats 3 --compile; }

# mmcv's ops for the visible GPU from the carried source, in the background (its own process group),
# niced: the GPU parts go first. The wheel lands in $DIR/mmcv-wheel, the outcome in mmcv-build.rc.
start_mmcv_build() {
    local nvcc sdist arch site wrap headers
    nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
    sdist=$(ls "$WHEELS"/mmcv-*.tar.gz 2>/dev/null | head -n 1)
    if [[ -z "$nvcc" || -z "$sdist" ]]; then
        echo "no ${nvcc:+mmcv source in $WHEELS}${nvcc:-nvcc} to build mmcv's ops with" >"$DIR/mmcv-build.skip"; return
    fi
    arch=$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
    site=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
    wrap="$DIR/mmcv-build-bin"; mkdir -p "$wrap" "$DIR/mmcv-wheel"
    bash scripts/std20_wrapper.sh "$wrap/c++" "$(command -v g++)"; ln -sf c++ "$wrap/g++"
    bash scripts/std20_wrapper.sh "$wrap/nvcc" "$nvcc"
    # torch's headers include cublas_v2.h, cusparse.h, ...: the NVIDIA wheels beside torch carry them.
    headers=$(ls -d "$site"/nvidia/*/include 2>/dev/null | tr '\n' ':')
    echo "building mmcv's ops for sm ${arch} with $nvcc (log: $DIR/mmcv-build.log)"
    setsid env PATH="$wrap:$PATH" CXX="$wrap/c++" PYTORCH_NVCC="$wrap/nvcc" CUDA_HOME="$(dirname "$(dirname "$nvcc")")" \
        CPATH="$headers${CPATH:-}" TORCH_CUDA_ARCH_LIST="$arch" MMCV_WITH_OPS=1 FORCE_CUDA=1 \
        MAX_JOBS=$(( $(nproc) > 8 ? $(nproc) - 4 : 4 )) \
        bash -c 'nice -n 10 "$PYTHON" -m pip wheel --no-index --no-deps --no-build-isolation -w "$DIR/mmcv-wheel" "$0" \
                 >"$DIR/mmcv-build.log" 2>&1; echo $? >"$DIR/mmcv-build.rc"' "$sdist" &
    BUILD_PID=$!
}

part_mmcv_ops() {
    has_cuda || { skip "no CUDA device"; return 0; }
    if ! has_mmcv_ops; then
        [[ -f "$DIR/mmcv-build.skip" ]] && { skip "$(cat "$DIR/mmcv-build.skip")"; return 0; }
        echo "waiting for mmcv's build (log: $DIR/mmcv-build.log)"
        while [[ ! -f "$DIR/mmcv-build.rc" ]]; do sleep 5; done
        if [[ "$(cat "$DIR/mmcv-build.rc")" != 0 ]]; then
            tail -n 40 "$DIR/mmcv-build.log"; echo "mmcv's build failed"; return 1
        fi
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$MMCV_SITE" "$DIR"/mmcv-wheel/mmcv-*.whl || return
    fi
    run_pytest tests/test_gpu.py::test_nms_on_cuda_matches_cpu tests/test_gpu.py::test_roi_align_on_cuda_matches_cpu \
               tests/test_gpu.py::test_multi_scale_deformable_attention_on_cuda_matches_pytorch \
               tests/test_gpu.py::test_vit_adapter_matches_cpu
}

part_train() {
    has_cuda || { skip "no CUDA device"; return 0; }
    has_mmcv_ops || { skip "mmcv has no compiled ops (see the mmcv-ops part)"; return 0; }
    run_pytest tests/test_gpu.py::test_tiny_config_trains_on_cuda -k bf16
}

export -f run_pytest skip has_cuda has_mmcv_ops benchmark part_setup part_cuda_vs_cpu part_autocast part_benchmark \
    part_benchmark_compile part_mmcv_ops part_train
BUILD_PID=''
# shellcheck disable=SC2317  # called by the trap
stop_build() { [[ -n "$BUILD_PID" ]] && kill -- "-$BUILD_PID" 2>/dev/null; }
trap stop_build EXIT

CUDA=0
export CUDA
start=$SECONDS
BUDGET=$(( BUDGET * SCALE ))
rows=()
for part in "${PARTS[@]}"; do
    IFS='|' read -r name limit what <<<"$part"
    limit=$(( limit * SCALE ))
    left=$(( BUDGET - (SECONDS - start) ))
    (( limit > left )) && limit=$left
    PART=$name SKIP_FILE="$DIR/$name.skip"
    export PART SKIP_FILE
    rm -f "$SKIP_FILE"
    if (( limit < 10 )); then
        rows+=("$name|not run|0|$limit|$what (no time left)"); continue
    fi
    echo "=== $name (at most $limit s): $what"
    t0=$SECONDS
    timeout -k 10 "$limit" bash -c "part_${name//-/_}" 2>&1 | tee "$DIR/$name.log"
    rc=${PIPESTATUS[0]}
    took=$(( SECONDS - t0 ))
    if (( rc == 124 || rc == 137 )); then result=TIMEOUT
    elif (( rc != 0 )); then result="FAILED ($rc)"
    elif [[ -f "$SKIP_FILE" ]]; then result="skipped: $(cat "$SKIP_FILE")"
    else result=passed
    fi
    rows+=("$name|$result|$took|$limit|$what")
    if [[ "$name" == setup ]]; then
        CUDA=$(head -n 1 "$DIR/device.txt" 2>/dev/null || echo 0)
        # The build of mmcv's ops needs a GPU and runs while the GPU parts do.
        if has_cuda && ! has_mmcv_ops; then start_mmcv_build; fi
    fi
done

{
    echo "gpu_check $(date -u '+%Y-%m-%d %H:%M UTC'): $(sed -n 2p "$DIR/device.txt" 2>/dev/null), $(( SECONDS - start )) s"
    echo
    echo "| part | result | seconds | limit | what |"
    echo "|---|---|---:|---:|---|"
    for row in "${rows[@]}"; do IFS='|' read -r name result took limit what <<<"$row"; echo "| $name | $result | $took | $limit | $what |"; done
    for bench in benchmark benchmark-compile; do
        [[ -f "$DIR/$bench/benchmark.md" ]] && { echo; echo "$bench ($DIR/$bench/benchmark.md):"; grep '^|' "$DIR/$bench/benchmark.md"; }
    done
} | tee "$DIR/summary.md"
! grep -qE '^\| [^|]+ \| (FAILED|TIMEOUT)' "$DIR/summary.md"
