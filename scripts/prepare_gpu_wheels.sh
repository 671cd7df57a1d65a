#!/usr/bin/env bash
# Put into OUT (default .whl/, ignored by git) what scripts/gpu_check.sh needs on a bare offline CUDA
# machine that lacks it: Python 3.12, x86-64, with torch, timm, numpy, OpenCV, matplotlib, scipy and
# pytest preinstalled but no OpenMMLab package. Run it here (it downloads from the registry), then
# bring OUT along; it must stay within 64 MiB.
#
#   scripts/prepare_gpu_wheels.sh [OUT]
#
# Carried: OpenMMLab's packages as wheels (mmcv as mmcv-lite, its Python parts without compiled ops:
# all that LaPEViT needs), the needs of theirs such a machine lacks, and mmcv's source, which
# gpu_check.sh builds there for the GPU it finds. Versions are the tested ones (scripts/constraints.txt).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-.whl}
LIMIT_MIB=64
# The project's venv (make setup): pip reads mmcv's source metadata by running its setup.py, which imports torch.
PYTHON=${PYTHON:-.venv/bin/python}
PIP=("$PYTHON" -m pip)
# Wheels for CPython 3.12 on x86-64 Linux; pip matches each manylinux tag exactly, so name the usual ones.
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform any)
# OpenMMLab's packages, then their needs that the machine lacks: mmengine's addict, termcolor, yapf (and
# its platformdirs); mmdet's pycocotools, shapely, terminaltables; mmseg's prettytable and (undeclared)
# ftfy, both with wcwidth; mmpretrain's importlib-metadata (lazy-importer), mat4py, modelindex (model-index,
# ordered-set); setuptools < 80, whose pkg_resources mmengine and mmcv's build import.
WHEELS=(mmengine mmcv-lite==2.1.0 mmsegmentation mmdet mmpretrain
        addict termcolor yapf platformdirs pycocotools shapely terminaltables prettytable ftfy wcwidth
        importlib-metadata lazy-importer mat4py modelindex model-index ordered-set 'setuptools<80')

# pip download, without the warnings of this machine's pip configuration about local indexes lacking a package.
download() { "${PIP[@]}" download -q --no-deps -c scripts/constraints.txt -d "$OUT" "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

rm -rf "$OUT" && mkdir -p "$OUT"
download "${TARGET[@]}" "${WHEELS[@]}"
# mmcv's source, which gpu_check.sh compiles there.
download --no-binary=:all: --no-build-isolation mmcv==2.1.0

ls -l "$OUT" | awk 'NR > 1 {printf "  %8.1f KiB  %s\n", $5 / 1024, $9}'
size=$(du -sb "$OUT" | cut -f1)
awk -v out="$OUT" -v n="$(ls "$OUT" | wc -l)" -v size="$size" -v limit="$LIMIT_MIB" \
    'BEGIN {printf "%s: %d files, %.1f MiB (limit %d MiB)\n", out, n, size / 1048576, limit}'
if (( size > LIMIT_MIB * 1048576 )); then
    echo "$OUT is over $LIMIT_MIB MiB: the GPU machine takes no more" >&2; exit 1
fi
