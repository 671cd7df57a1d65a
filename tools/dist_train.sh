#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args].
# GPUS processes on this node, one per GPU; without CUDA, gloo processes on the CPU.
# Several nodes: NNODES, NODE_RANK (0 .. NNODES-1), MASTER_ADDR (node 0) and PORT on every node.
# MAX_RESTARTS=N: after a process fails, torchrun restarts the processes up to N times, and they
# resume from the newest complete checkpoint this job wrote (docs/distributed.md).
# PYTHON: the interpreter (default: the project's .venv/bin/python if it exists, else python).
source "$(dirname "$0")/launch_env.sh"
CONFIG=${1:-}
GPUS=${2:-}
need_process_count "$GPUS" "tools/dist_train.sh CONFIG GPUS [train.py args]"
# tools/train.py resumes from a checkpoint written after this moment: one of this job's.
export LAPE_MM_LAUNCH_TIME=$(date +%s.%N)
if (( ${MAX_RESTARTS:-0} > 0 )); then
    # torchrun's default (static) rendezvous keeps one store across restarts, where the restarted
    # processes can read the dead ones' addresses (gloo: "Connection refused", pytorch#135712).
    # The c10d rendezvous without a shared store gives each restart a new one. It numbers the
    # nodes as they join: NODE_RANK is not needed.
    export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    TORCHRUN=("$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --max-restarts="$MAX_RESTARTS"
              --rdzv-backend=c10d --rdzv-endpoint="${MASTER_ADDR:-127.0.0.1}:${PORT:-29500}")
fi

exec "${TORCHRUN[@]}" --nproc_per_node="$GPUS" "$HERE/train.py" "$CONFIG" --launcher pytorch "${@:3}"
