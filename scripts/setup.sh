#!/usr/bin/env bash
# Create .venv with the tested OpenMMLab stack and lape_mm installed in editable mode.
#
# pyproject.toml declares the ranges lape_mm works with; this installs the exact set it is tested
# with, scripts/constraints.txt (every package of the venv, pinned), so `make demo` and `make test`
# are reproducible (its header says how to regenerate it after changing a version).
#
# Idempotent: each step is skipped when what it makes is already there, so a second run
# takes seconds. mmcv 2.1.0 exists on PyPI only as source; its compiled ops are built once
# into a wheel cache outside the repo (LAPE_MM_CACHE, default ~/.cache/lape_mm) and reused.
# The cache is keyed by what a wheel was built for: wheels/torch<version>/cpu, or
# wheels/torch<version>/cu<CUDA>-sm<archs> when torch has CUDA, a GPU (or TORCH_CUDA_ARCH_LIST)
# is there and an nvcc of torch's CUDA major version is found (CUDA_HOME, PATH, /usr/local/cuda);
# the wheel's name holds the Python it is for (cp311), so PYTHON=python3.12 builds its own. An
# existing environment with the same torch and Python can install such a wheel (README, "Versions").
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
CACHE=${LAPE_MM_CACHE:-$HOME/.cache/lape_mm}
STAMP="$VENV/.setup-stamp"
PIP="$VENV/bin/pip"

CONSTRAINTS=scripts/constraints.txt
MMCV_VERSION=2.1.0

log() { printf '[setup] %s\n' "$*"; }
shout() { { echo; printf '[setup] !!! %s\n' "$@"; echo; } >&2; }

# Everything setup installs is fixed by this file, pyproject.toml and the constraints: skip when none changed.
want=$(cat "$0" pyproject.toml "$CONSTRAINTS" scripts/check_ops.py scripts/std20_wrapper.sh | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    log "up to date ($VENV)"; exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$PIP" install -q -c "$CONSTRAINTS" --upgrade pip
log "installing $(grep -E '^torch(vision)?==' "$CONSTRAINTS" | tr '\n' ' ')"
"$PIP" install -q -c "$CONSTRAINTS" torch torchvision
# mmcv's build needs these inside the venv (it is built without build isolation); setuptools
# 80 turns the pkg_resources deprecation (imported by mmengine) into a warning on every run.
"$PIP" install -q -c "$CONSTRAINTS" 'setuptools>=77,<80' ninja wheel mmengine

# What torch was built with and the visible GPUs' architectures: "2.14.1+cu130 13.0 8.0;9.0"
# ("none" for none).
read -r torch_version torch_cuda gpu_archs < <("$VENV/bin/python" -c "
import torch
archs = sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
print(torch.__version__, torch.version.cuda or 'none', ';'.join(archs) or 'none')")

find_nvcc() {
    local home=${CUDA_HOME:-${CUDA_PATH:-}}
    if [[ -n "$home" && -x "$home/bin/nvcc" ]]; then echo "$home/bin/nvcc"
    elif command -v nvcc >/dev/null; then command -v nvcc
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then echo /usr/local/cuda/bin/nvcc
    fi
}

# The build target: "cpu", or "cuNNN-smNN" when mmcv's CUDA ops can be built here.
target=cpu
cuda_problem=''
nvcc=''
if [[ "$torch_cuda" != none && ( "$gpu_archs" != none || -n "${TORCH_CUDA_ARCH_LIST:-}" ) ]]; then
    nvcc=$(find_nvcc || true)
    nvcc_cuda=''
    [[ -n "$nvcc" ]] && nvcc_cuda=$("$nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    if [[ -z "$nvcc" ]]; then
        cuda_problem="no nvcc found (looked in \$CUDA_HOME, \$PATH and /usr/local/cuda)"
    elif [[ "${nvcc_cuda%%.*}" != "${torch_cuda%%.*}" ]]; then
        cuda_problem="$nvcc is CUDA $nvcc_cuda, but torch $torch_version needs CUDA ${torch_cuda%%.*}.x"
    else
        # Build for the visible GPUs unless the user chose the architectures ("8.0;9.0").
        export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$gpu_archs}
        target="cu${torch_cuda//./}-sm$(sed 's/[.]//g; s/[ ;]\+/-/g' <<<"$TORCH_CUDA_ARCH_LIST")"
    fi
fi
if [[ -n "$cuda_problem" ]]; then
    shout "mmcv's ops (RoIAlign, NMS, deformable attention) will NOT run on CUDA tensors:" \
          "$cuda_problem." \
          "Install the CUDA ${torch_cuda} toolkit (nvcc) and set CUDA_HOME, then rerun setup." \
          "LAPE_MM_CPU_OPS=1 accepts CPU-only ops (then train on CPU: CUDA_VISIBLE_DEVICES=)."
fi
WHEELS="$CACHE/wheels/torch$torch_version/$target"

build_mmcv() {
    # torch 2.14's headers need C++20, but mmcv's setup.py hard-codes -std=c++17 (for g++ and
    # nvcc); compiler wrappers rewrite that flag so the ops compile without patching mmcv.
    local wrap; wrap=$(mktemp -d)
    bash scripts/std20_wrapper.sh "$wrap/c++" /usr/bin/g++; ln -s c++ "$wrap/g++"
    local cuda_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)  # a CPU build even where a GPU is visible
    if [[ "$target" != cpu ]]; then
        bash scripts/std20_wrapper.sh "$wrap/nvcc" "$nvcc"
        # torch's headers include cusparse.h, cublas_v2.h, ...: a toolkit with little beyond nvcc
        # lacks them, but the NVIDIA wheels that torch installed carry them.
        local headers; headers=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/*/include 2>/dev/null | tr '\n' ':')
        cuda_env=(FORCE_CUDA=1 CUDA_HOME="$(dirname "$(dirname "$nvcc")")" PYTORCH_NVCC="$wrap/nvcc"
                  CPATH="$headers${CPATH:-}")
    fi
    mkdir -p "$WHEELS"
    log "building mmcv $MMCV_VERSION with $target ops into $WHEELS (about 12 minutes on 2 cores for cpu, once)"
    local tmp; tmp=$(mktemp -d)
    env PATH="$wrap:$VENV/bin:$PATH" CXX="$wrap/c++" MMCV_WITH_OPS=1 "${cuda_env[@]}" \
        MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PIP" wheel --no-cache-dir --no-build-isolation --no-deps -w "$tmp" "mmcv==$MMCV_VERSION"
    mv "$tmp"/mmcv-*.whl "$WHEELS"/   # mv within the cache is atomic enough: no half wheel lands
    rm -rf "$wrap" "$tmp"
}

# A wheel of mmcv's ops is for one Python (its cp3XX tag) as well as one torch and target.
py_tag=$("$VENV/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
find_wheel() { ls "$WHEELS"/mmcv-"$MMCV_VERSION"-"$py_tag"-*.whl 2>/dev/null | head -n1 || true; }
mmcv_wheel=$(find_wheel)
# Before the cache was keyed, setup kept one CPU wheel (built for torch 2.14.1) in wheels/;
# copy it (old checkouts still look there) instead of building again.
legacy=$(ls "$CACHE/wheels"/mmcv-"$MMCV_VERSION"-"$py_tag"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$mmcv_wheel" && "$target" == cpu && -n "$legacy" && "$torch_version" == 2.14.1* ]]; then
    log "reusing $legacy (built before the cache was keyed) as $target"
    mkdir -p "$WHEELS" && cp "$legacy" "$WHEELS"/ && mmcv_wheel=$(find_wheel)
fi
if [[ -z "$mmcv_wheel" ]]; then build_mmcv; mmcv_wheel=$(find_wheel); fi
log "installing $(basename "$mmcv_wheel") ($target) and lape_mm[dev]"
# --force-reinstall: an mmcv 2.1.0 built for another target may be installed already.
"$PIP" install -q -c "$CONSTRAINTS" "$mmcv_wheel"
"$PIP" install -q --force-reinstall --no-deps "$mmcv_wheel"
"$PIP" install -q -c "$CONSTRAINTS" -e '.[dev]'
"$VENV/bin/python" scripts/check_ops.py
echo "$want" >"$STAMP"
