#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args].
# Same environment variables as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON).
source "$(dirname "$0")/launch_env.sh"
CONFIG=${1:-}
CHECKPOINT=${2:-}
GPUS=${3:-}
need_process_count "$GPUS" "tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]"

exec "${TORCHRUN[@]}" --nproc_per_node="$GPUS" \
    "$HERE/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
