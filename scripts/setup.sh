#!/usr/bin/env bash
# Create .venv with the pinned OpenMMLab stack and lape_mm installed in editable mode.
#
# Idempotent: each step is skipped when what it makes is already there, so a second run
# takes seconds. mmcv 2.1.0 exists on PyPI only as source; its compiled ops are built once
# into a wheel cache outside the repo (LAPE_MM_CACHE, default ~/.cache/lape_mm) and reused.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
CACHE=${LAPE_MM_CACHE:-$HOME/.cache/lape_mm}
WHEELS="$CACHE/wheels"
STAMP="$VENV/.setup-stamp"
PIP="$VENV/bin/pip"

TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
MMCV_VERSION=2.1.0

log() { printf '[setup] %s\n' "$*"; }

# Everything setup installs is fixed by this file and pyproject.toml: skip when neither changed.
want=$(cat "$0" pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    log "up to date ($VENV)"; exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$PIP" install -q --upgrade pip
log "installing ${TORCH_PINS[*]}"
"$PIP" install -q "${TORCH_PINS[@]}"
# mmcv's build needs these inside the venv (it is built without build isolation); setuptools
# 80 turns the pkg_resources deprecation (imported by mmengine) into a warning on every run.
"$PIP" install -q 'setuptools>=77,<80' ninja wheel 'mmengine==0.10.7'

build_mmcv() {
    # torch 2.14's headers need C++20, but mmcv's setup.py hard-codes -std=c++17; a compiler
    # wrapper rewrites that flag so the ops compile without patching mmcv.
    local wrap; wrap=$(mktemp -d)
    cat >"$wrap/c++" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do [[ "$a" == -std=c++17 ]] && a=-std=c++20; args+=("$a"); done
exec /usr/bin/g++ "${args[@]}"
WRAP
    chmod +x "$wrap/c++"; ln -s c++ "$wrap/g++"
    mkdir -p "$WHEELS"
    log "building mmcv $MMCV_VERSION with ops into $WHEELS (about 12 minutes on 2 cores, once)"
    local tmp; tmp=$(mktemp -d)
    PATH="$wrap:$VENV/bin:$PATH" CXX="$wrap/c++" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
        MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PIP" wheel --no-build-isolation --no-deps -w "$tmp" "mmcv==$MMCV_VERSION"
    mv "$tmp"/mmcv-*.whl "$WHEELS"/   # mv within the cache is atomic enough: no half wheel lands
    rm -rf "$wrap" "$tmp"
}

mmcv_wheel=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$mmcv_wheel" ]]; then build_mmcv; mmcv_wheel=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl | head -n1); fi
log "installing $(basename "$mmcv_wheel") and lape_mm[dev]"
"$PIP" install -q "$mmcv_wheel"
"$PIP" install -q -e '.[dev]'
"$VENV/bin/python" -c "import mmcv.ops, mmseg, mmdet, lape_mm; print('[setup] ok: mmcv', mmcv.__version__, 'mmseg', mmseg.__version__, 'mmdet', mmdet.__version__)"
echo "$want" >"$STAMP"
