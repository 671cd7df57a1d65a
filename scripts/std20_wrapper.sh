#!/usr/bin/env bash
# Write to $1 a script that runs compiler $2 with -std=c++17 replaced by -std=c++20.
#
# torch >= 2.14's headers need C++20, but mmcv 2.1's setup.py hard-codes -std=c++17 (for g++ and nvcc):
# put such wrappers first on PATH (and in CXX / PYTORCH_NVCC) and mmcv's ops compile unpatched.
# Used by scripts/setup.sh and scripts/gpu_check.sh.
set -euo pipefail
printf '#!/usr/bin/env bash\nargs=()\nfor a in "$@"; do [[ "$a" == -std=c++17 ]] && a=-std=c++20; args+=("$a"); done\nexec %q "${args[@]}"\n' \
    "$2" >"$1"
chmod +x "$1"
